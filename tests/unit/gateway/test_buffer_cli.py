"""``fieldgate buffer stats|inspect|export`` on real buffer files, stopped and running."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from adapters.base import Quality, Reading
from gateway.buffer import Buffer, BufferConfig
from gateway.buffer_cli import app

T0 = 1_700_000_000_000
"""2023-11-14T22:13:20.000Z"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def sample_readings() -> list[Reading]:
    plc1 = [Reading("plc1", f"t{i % 3}", T0 + i * 1000, float(i)) for i in range(30)]
    plc2 = [
        Reading("plc2", "flag", T0 + 100, True, Quality.BAD, "timeout"),
        Reading("plc2", "big", T0 + 200, 2**70),
        Reading("plc2", "text", T0 + 300, 'a,b"c'),
        Reading("plc2", "missing", T0 + 400, None, Quality.UNCERTAIN, "no value"),
    ]
    return plc1 + plc2


@pytest.fixture
async def buffer_file(tmp_path: Path) -> tuple[Path, int, int]:
    """A stopped buffer holding ``sample_readings()``; returns (path, first seq, last seq)."""
    path = tmp_path / "buffer.db"
    async with Buffer(BufferConfig(path=path)) as buffer:
        buffer.submit(sample_readings())
        await buffer.flush()
        assert buffer.first_seq_this_run is not None and buffer.last_seq is not None
        return path, buffer.first_seq_this_run, buffer.last_seq


# -- stats ---------------------------------------------------------------------------------


def test_stats_json_on_a_stopped_buffer(buffer_file: tuple[Path, int, int]) -> None:
    path, first, last = buffer_file
    result = invoke("stats", "--path", str(path), "--window", "0", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["gateway_running"] is False
    assert stats["depth"] == 34
    assert stats["first_accepted_seq"] == first == stats["oldest_seq"]
    assert stats["last_accepted_seq"] == last == first + 33
    assert stats["next_seq"] == last + 1
    assert stats["dropped"] == 0
    assert stats["oldest_ts"] == "2023-11-14T22:13:20.000Z"
    assert stats["oldest_age_s"] > 86400
    assert stats["file_bytes"] >= stats["used_bytes"] > 0
    assert stats["accepted_per_s"] is None and stats["drained_per_s"] is None
    assert stats["window_s"] is None


def test_stats_human_table(buffer_file: tuple[Path, int, int]) -> None:
    path, _, last = buffer_file
    result = invoke("stats", "--path", str(path), "--window", "0.05")
    assert result.exit_code == 0, result.output
    for label in ("depth", "oldest age", "file bytes", "dropped", "next seq", "drained /s"):
        assert label in result.stdout
    assert str(last + 1) in result.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_stats_of_an_empty_buffer(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"

    async def create() -> None:
        async with Buffer(BufferConfig(path=path)):
            pass

    asyncio.run(create())
    stats = json.loads(invoke("stats", "--path", str(path), "--window", "0", "--json").stdout)
    assert stats["depth"] == 0
    assert stats["oldest_ts"] is None and stats["oldest_age_s"] is None
    assert stats["first_accepted_seq"] is None and stats["last_accepted_seq"] is None


async def test_stats_of_a_running_buffer_measure_rates(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    stop = asyncio.Event()
    async with Buffer(BufferConfig(path=path, flush_interval=0.01)) as buffer:

        async def traffic() -> None:
            # ~20k readings/s in, and acknowledged as they come (a gateway keeping up).
            after = 0
            k = 0
            while not stop.is_set():
                buffer.submit([Reading("plc1", f"t{i}", T0 + k, float(i)) for i in range(200)])
                k += 1
                await buffer.flush()
                while (batch := await buffer.read(after, 5000)) is not None:
                    await buffer.ack(batch.first, batch.last)
                    after = batch.last
                await asyncio.sleep(0.01)

        task = asyncio.create_task(traffic())
        await asyncio.sleep(0.1)
        try:
            result = await asyncio.to_thread(
                invoke, "stats", "--path", str(path), "--window", "0.5", "--json"
            )
        finally:
            stop.set()
            await task
        assert result.exit_code == 0, result.output
        stats = json.loads(result.stdout)
        assert stats["gateway_running"] is True
        assert 0.4 < stats["window_s"] < 2
        assert stats["accepted_per_s"] > 1000
        assert stats["drained_per_s"] > 1000
        # Everything accepted was acknowledged within a few readings' slack.
        assert stats["drained_per_s"] == pytest.approx(stats["accepted_per_s"], rel=0.5)
        assert stats["last_accepted_seq"] <= buffer.last_seq  # type: ignore[operator]


# -- inspect -------------------------------------------------------------------------------


def test_inspect_json_per_series_and_tail(buffer_file: tuple[Path, int, int]) -> None:
    path, first, last = buffer_file
    result = invoke("inspect", "--path", str(path), "--tail", "3", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    series = {(s["device"], s["tag"]): s for s in document["series"]}
    assert list(series) == sorted(series)
    assert set(series) == {
        ("plc1", "t0"),
        ("plc1", "t1"),
        ("plc1", "t2"),
        ("plc2", "big"),
        ("plc2", "flag"),
        ("plc2", "missing"),
        ("plc2", "text"),
    }
    t0 = series["plc1", "t0"]
    assert t0["rows"] == 10
    assert t0["oldest_ts"] == "2023-11-14T22:13:20.000Z"
    assert t0["newest_ts"] == "2023-11-14T22:13:47.000Z"
    assert (t0["first_seq"], t0["last_seq"]) == (first, first + 27)
    # 2**70 first probed the int series, then was stored as bigint: one entry, one row.
    assert series["plc2", "big"]["rows"] == 1
    tail = document["tail"]
    assert [row["seq"] for row in tail] == [last - 2, last - 1, last]
    assert tail[0]["value"] == 2**70 and tail[0]["tag"] == "big"
    assert tail[2]["value"] is None and tail[2]["quality"] == "uncertain"


def test_inspect_human_and_filters(buffer_file: tuple[Path, int, int]) -> None:
    path, _, _ = buffer_file
    result = invoke("inspect", "--path", str(path), "--device", "plc2", "--tail", "2")
    assert result.exit_code == 0, result.output
    assert "4 series" in result.stdout and "newest 2 readings" in result.stdout
    assert "plc1" not in result.stdout
    assert "no value" in result.stdout
    only = json.loads(invoke("inspect", "--path", str(path), "--tag", "t1", "--json").stdout)
    assert [(s["device"], s["tag"], s["rows"]) for s in only["series"]] == [("plc1", "t1", 10)]
    assert "tail" not in only


async def test_inspect_shows_known_tags_with_nothing_buffered(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    async with Buffer(BufferConfig(path=path)) as buffer:
        buffer.submit([Reading("plc1", "a", T0, 1.0), Reading("plc1", "b", T0, 2.0)])
        await buffer.flush()
        batch = await buffer.read(0, 1)
        assert batch is not None
        await buffer.ack(batch.first, batch.last)
        result = invoke("inspect", "--path", str(path), "--json")  # while it is open
    rows = {s["tag"]: s for s in json.loads(result.stdout)["series"]}
    assert rows["a"]["rows"] == 0 and rows["a"]["oldest_ts"] is None
    assert rows["b"]["rows"] == 1


# -- export --------------------------------------------------------------------------------


def test_export_csv_to_stdout(buffer_file: tuple[Path, int, int]) -> None:
    path, first, last = buffer_file
    result = invoke("export", "--path", str(path))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 34
    assert list(rows[0]) == ["seq", "device", "tag", "ts", "value", "quality", "reason"]
    assert [int(r["seq"]) for r in rows] == list(range(first, last + 1))
    assert rows[0] == {
        "seq": str(first),
        "device": "plc1",
        "tag": "t0",
        "ts": "2023-11-14T22:13:20.000Z",
        "value": "0.0",
        "quality": "good",
        "reason": "",
    }
    by_tag = {r["tag"]: r for r in rows if r["device"] == "plc2"}
    assert by_tag["flag"]["value"] == "true" and by_tag["flag"]["quality"] == "bad"
    assert by_tag["flag"]["reason"] == "timeout"
    assert by_tag["big"]["value"] == str(2**70)
    assert by_tag["text"]["value"] == 'a,b"c'
    assert by_tag["missing"]["value"] == "" and by_tag["missing"]["quality"] == "uncertain"


def test_export_jsonl_to_a_file_with_filters(
    buffer_file: tuple[Path, int, int], tmp_path: Path
) -> None:
    path, first, _ = buffer_file
    out = tmp_path / "out.jsonl"
    result = invoke(
        "export", "--path", str(path), "-f", "jsonl", "-o", str(out), "--device", "plc2"
    )
    assert result.exit_code == 0, result.output
    assert "exported 4 readings" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["tag"], r["value"]) for r in lines] == [
        ("flag", True),
        ("big", 2**70),
        ("text", 'a,b"c'),
        ("missing", None),
    ]
    assert lines[0] == {
        "seq": first + 30,
        "device": "plc2",
        "tag": "flag",
        "ts": "2023-11-14T22:13:20.100Z",
        "value": True,
        "quality": "bad",
        "reason": "timeout",
    }
    both = invoke("export", "--path", str(path), "-f", "jsonl", "--device", "plc1", "--tag", "t2")
    values = [json.loads(line)["value"] for line in both.stdout.splitlines()]
    assert values == [float(i) for i in range(2, 30, 3)]
    none = invoke("export", "--path", str(path), "--device", "nobody")
    assert none.exit_code == 0 and none.stdout.splitlines() == [
        "seq,device,tag,ts,value,quality,reason"
    ]


# -- choosing the file, and errors ----------------------------------------------------------


def test_config_option_reads_buffer_path(
    buffer_file: tuple[Path, int, int], tmp_path: Path
) -> None:
    path, _, last = buffer_file
    config = tmp_path / "gateway.yaml"
    config.write_text(f"gateway:\n  id: gw1\nbuffer:\n  path: {path}\ndevices: []\n")
    result = invoke("stats", "-c", str(config), "--window", "0", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["last_accepted_seq"] == last


def test_errors_are_precise(tmp_path: Path) -> None:
    missing = invoke("stats", "--path", str(tmp_path / "nope.db"))
    assert missing.exit_code == 1
    assert f"error: no buffer file at {tmp_path / 'nope.db'}" in missing.stderr

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"definitely not sqlite" * 300)
    for command in ("stats", "inspect", "export"):
        result = invoke(command, "--path", str(garbage))
        assert result.exit_code == 1, command
        assert "not a fieldgate buffer" in result.stderr
        assert "not an SQLite database" in result.stderr

    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    result = invoke("inspect", "--path", str(foreign))
    assert result.exit_code == 1
    assert "is an SQLite database but not a fieldgate buffer" in result.stderr

    neither = invoke("stats")
    assert neither.exit_code == 2 and "exactly one of" in neither.output
    both = invoke("stats", "-c", "x.yaml", "--path", "y.db")
    assert both.exit_code == 2

    bad_config = tmp_path / "gateway.yaml"
    bad_config.write_text("gateway:\n  id: gw1\nbuffr: {}\ndevices: []\n")
    result = invoke("stats", "-c", str(bad_config))
    assert result.exit_code == 1 and "buffr" in result.stderr

    bad_format = invoke("export", "--path", str(garbage), "--format", "xml")
    assert bad_format.exit_code == 2


def test_readers_leave_the_buffer_untouched(buffer_file: tuple[Path, int, int]) -> None:
    path, _, _ = buffer_file
    before = path.read_bytes()
    for args in (("stats", "--window", "0"), ("inspect", "--tail", "5"), ("export",)):
        assert invoke(*args, "--path", str(path)).exit_code == 0
    assert path.read_bytes() == before
