"""The SQLite outbox: sequence numbers, round trips, acks, bounds and failures, on real files."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.base import Quality, Reading, now_ms
from cloud.contract import decode_batch
from gateway.buffer import (
    Buffer,
    BufferConfig,
    BufferStorageError,
    OutboxBatch,
    accepted_range,
    lock_path_of,
    open_readonly,
)


def config(tmp_path: Path, **kwargs: Any) -> BufferConfig:
    return BufferConfig(path=tmp_path / "buffer.db", **kwargs)


def readings(
    n: int, *, start: int = 0, device: str = "plc1", ts: int | None = None
) -> list[Reading]:
    base = now_ms() if ts is None else ts
    return [Reading(device, f"tag{i % 10}", base + i, float(start + i)) for i in range(n)]


async def read_all(buffer: Buffer, after: int = 0) -> list[tuple[int, str, str, Any]]:
    out: list[tuple[int, str, str, Any]] = []
    while (batch := await buffer.read(after, 1000)) is not None:
        out.extend(
            (seq, *batch.series[s], v)
            for seq, s, v in zip(batch.seqs, batch.s, batch.val, strict=True)
        )
        after = batch.last
    return out


def corrupt_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("buffer.db.corrupt-*"))


def lock_is_free(path: Path) -> bool:
    """Whether nobody holds the buffer's lock file (probed with a lock of our own)."""
    with open(lock_path_of(path), "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


def buffer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fieldgate-buffer")]


# -- configuration -------------------------------------------------------------------------


def test_config_parses_units_and_forbids_unknown_keys() -> None:
    cfg = BufferConfig.model_validate(
        {"path": "x.db", "max_bytes": "64MiB", "max_age": "7d", "flush_interval": "20ms"}
    )
    assert cfg.max_bytes == 64 * 1024**2
    assert cfg.max_age == 7 * 86400
    assert cfg.flush_interval == pytest.approx(0.02)
    assert BufferConfig().max_bytes == 1024**3
    with pytest.raises(ValidationError, match="max_byte"):
        BufferConfig.model_validate({"max_byte": "1GB"})
    with pytest.raises(ValidationError, match="at least 65536"):
        BufferConfig(max_bytes=1000)


# -- sequence numbers ----------------------------------------------------------------------


async def test_fresh_file_numbers_from_the_clock_in_microseconds(tmp_path: Path) -> None:
    before = time.time_ns() // 1000
    async with Buffer(config(tmp_path)) as buffer:
        assert buffer.last_seq is None and buffer.first_seq_this_run is None
        buffer.submit(readings(3))
        await buffer.flush()
        after = time.time_ns() // 1000
        assert buffer.first_seq_this_run is not None
        assert before <= buffer.first_seq_this_run <= after
        assert buffer.last_seq == buffer.first_seq_this_run + 2


async def test_sequence_strictly_increasing_and_never_reused_across_reopen(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with Buffer(cfg) as buffer:
        for chunk in range(5):
            buffer.submit(readings(100, start=chunk * 100))
        await buffer.flush()
        rows = await read_all(buffer)
        seqs = [r[0] for r in rows]
        assert seqs == list(range(seqs[0], seqs[0] + 500))
        # Submit order is kept: values were submitted as 0..499.
        assert [r[3] for r in rows] == [float(i) for i in range(500)]
        assert await buffer.ack(seqs[0], seqs[-1]) == 500
        last = buffer.last_seq
        assert last is not None
        assert (await buffer.status()).depth == 0

    # Every row is gone; the file must still remember where numbering stands.
    async with Buffer(cfg) as buffer:
        assert buffer.last_seq == last
        buffer.submit(readings(10))
        await buffer.flush()
        assert buffer.first_seq_this_run == last + 1
        assert [r[0] for r in await read_all(buffer)] == list(range(last + 1, last + 11))


async def test_unacked_rows_survive_reopen(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(50))
        await buffer.flush()
        before = await read_all(buffer)
        await buffer.ack(before[0][0], before[9][0])
    async with Buffer(cfg) as buffer:
        assert await read_all(buffer) == before[10:]
        assert (await buffer.status()).depth == 40


async def test_exit_commits_what_is_pending(tmp_path: Path) -> None:
    cfg = config(tmp_path, flush_interval=60)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(7))
    async with Buffer(cfg) as buffer:
        assert len(await read_all(buffer)) == 7


# -- values --------------------------------------------------------------------------------


async def test_every_kind_round_trips_exactly(tmp_path: Path) -> None:
    ts = now_ms()
    values: list[Any] = [
        True,
        False,
        0,
        1,
        -5,
        2**62,
        -(2**63),
        2**63,
        2**70,
        -(2**80),
        3.0,
        0.0,
        -2.5,
        1e300,
        float("inf"),
        "12",
        "3.0",
        "",
        "h\u00e9llo",
        None,
    ]
    sent = [Reading("dev", "mixed", ts + i, v) for i, v in enumerate(values)]
    sent += [
        Reading("dev", "bad", ts, None, Quality.BAD, "timeout"),
        Reading("dev", "odd", ts, 7, Quality.UNCERTAIN, "stale"),
        Reading("dev", "odd", ts, Quality.BAD),  # an IntEnum value: stored as a plain int
    ]
    async with Buffer(config(tmp_path)) as buffer:
        buffer.submit(sent)
        await buffer.flush()
        batch = await buffer.read(0, 1000)
    assert batch is not None and len(batch) == len(sent)
    got = [batch.val[i] for i in range(len(values))]
    assert got == values
    assert [type(v) for v in got] == [type(v) for v in values]
    assert batch.series == [("dev", "mixed"), ("dev", "bad"), ("dev", "odd")]
    assert batch.t[: len(values)] == [ts + i for i in range(len(values))]
    assert batch.q[len(values) :] == [2, 1, 0]
    assert batch.why == {len(values): "timeout", len(values) + 1: "stale"}
    assert batch.val[-1] == 2 and type(batch.val[-1]) is int


async def test_nan_comes_back_as_none_and_foreign_types_are_kept(tmp_path: Path) -> None:
    class Temperature:
        def __str__(self) -> str:
            return "21.5 degC"

    async with Buffer(config(tmp_path)) as buffer:
        buffer.submit(
            [
                Reading("d", "a", 1, float("nan")),
                Reading("d", "b", 2, Temperature()),  # type: ignore[arg-type]
                Reading("d", "c", 3, 4.0),
            ]
        )
        await buffer.flush()
        batch = await buffer.read(0, 10)
    assert batch is not None
    assert batch.val == [None, "21.5 degC", 4.0]


async def test_bytes_values_are_stored_as_text_not_blobs(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path)) as buffer:
        for _ in range(2):  # the second batch must not take a cached fast path
            buffer.submit([Reading("d", "raw", 1, b"\x01\x02")])  # type: ignore[arg-type]
            await buffer.flush()
        batch = await buffer.read(0, 10)
    assert batch is not None
    assert batch.val == ["b'\\x01\\x02'"] * 2
    batch.encode()  # JSON can carry it


async def test_a_malformed_batch_is_dropped_not_retried_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with Buffer(config(tmp_path)) as buffer:
        with caplog.at_level(logging.ERROR, logger="gateway.buffer"):
            buffer.submit([("d", "t", 1)])  # type: ignore[list-item]
            await buffer.flush()
        assert "cannot store a batch" in caplog.text
        assert buffer.dropped == 1 and buffer.error is not None
        buffer.submit(readings(3))
        await buffer.flush()
        assert buffer.error is None
        assert len(await read_all(buffer)) == 3
        assert (await buffer.status()).dropped == 1


async def test_encode_produces_a_valid_wire_batch(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path)) as buffer:
        buffer.submit(
            [
                Reading("plc1", "speed", 1000, 3.0),
                Reading("plc1", "run", 1001, True),
                Reading("plc2", "speed", 1002, None, Quality.BAD, "timeout"),
            ]
        )
        await buffer.flush()
        batch = await buffer.read(0, 10)
    assert batch is not None
    wire = decode_batch(batch.encode())
    assert wire.first == batch.first and wire.last == batch.last
    assert wire.series == [("plc1", "speed"), ("plc1", "run"), ("plc2", "speed")]
    assert wire.val == [3.0, True, None] and isinstance(wire.val[0], float)
    assert wire.q == [0, 0, 2] and wire.why == {"2": "timeout"}


# -- read / ack ----------------------------------------------------------------------------


async def test_read_after_lets_several_batches_be_in_flight(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path)) as buffer:
        assert await buffer.read(0, 10) is None
        buffer.submit(readings(25))
        await buffer.flush()
        first = await buffer.read(0, 10)
        assert first is not None and len(first) == 10
        second = await buffer.read(first.last, 10)
        third = await buffer.read(second.last, 10) if second else None
        assert second is not None and third is not None
        assert second.first == first.last + 1 and len(third) == 5
        assert await buffer.read(third.last, 10) is None

        # Acks may arrive out of order; each deletes its own range exactly once.
        assert await buffer.ack(second.first, second.last) == 10
        assert await buffer.ack(second.first, second.last) == 0
        assert await buffer.ack(first.first, first.last) == 10
        assert await buffer.ack(first.first, third.last) == 5
        assert await buffer.ack(third.last, third.first) == 0
        assert await buffer.read(0, 10) is None
        assert (await buffer.status()).depth == 0
        with pytest.raises(ValueError, match="max_points"):
            await buffer.read(0, 0)


async def test_status_reports_depth_bytes_oldest(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path, flush_interval=60)) as buffer:
        buffer.submit(readings(5, ts=1_000))
        await buffer.flush()
        buffer.submit(readings(3, ts=5_000))  # still pending: counted in depth
        status = await buffer.status()
        assert status.depth == 8
        assert status.oldest_ts == 1_000
        assert status.bytes > 0
        assert status.last_seq == buffer.last_seq and status.dropped == 0


# -- event-driven waiting ------------------------------------------------------------------


async def test_flush_cuts_the_interval_short(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path, flush_interval=30)) as buffer:
        buffer.submit(readings(3))
        started = time.monotonic()
        await asyncio.wait_for(buffer.flush(), 5)
        assert time.monotonic() - started < 1
        assert buffer.last_seq is not None
        await buffer.flush()  # nothing pending: returns at once


async def test_wait_for_data_wakes_on_commit(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path, flush_interval=0.01)) as buffer:
        waiter = asyncio.create_task(buffer.wait_for_data(0))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # nothing committed yet
        buffer.submit(readings(1))
        await asyncio.wait_for(waiter, 5)
        last = buffer.last_seq
        assert last is not None
        await asyncio.wait_for(buffer.wait_for_data(last - 1), 0.1)  # already there

        waiter = asyncio.create_task(buffer.wait_for_data(last))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        buffer.submit(readings(1))
        await buffer.flush()
        await asyncio.wait_for(waiter, 5)


async def test_wait_for_data_raises_when_the_buffer_closes(tmp_path: Path) -> None:
    async with Buffer(config(tmp_path)) as buffer:
        waiter = asyncio.create_task(buffer.wait_for_data(0))
        await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="clos"):
        await waiter


# -- lifecycle -----------------------------------------------------------------------------


async def test_lifecycle_leaves_nothing_running(tmp_path: Path) -> None:
    buffer = Buffer(config(tmp_path))
    assert not (tmp_path / "buffer.db").exists()  # the constructor does no I/O
    with pytest.raises(RuntimeError):
        buffer.submit(readings(1))
    async with buffer:
        names = {t.get_name() for t in asyncio.all_tasks()}
        assert "fieldgate-buffer-writer" in names
        assert len(buffer_threads()) == 1
    assert buffer_threads() == []
    with pytest.raises(RuntimeError):
        buffer.submit(readings(1))
    with pytest.raises(RuntimeError):
        await buffer.read(0, 10)
    with pytest.raises(RuntimeError, match="once"):
        await buffer.__aenter__()


async def test_a_second_process_or_instance_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.buffer._LOCK_TIMEOUT", 0.05)
    cfg = config(tmp_path)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(1))
        await buffer.flush()
        assert not lock_is_free(cfg.path)
        with pytest.raises(BufferStorageError, match="another gateway process") as refused:
            async with Buffer(cfg):
                pass
        assert f"pid {os.getpid()}" in str(refused.value)
        # Another spelling of the same path shares the lock.
        other = BufferConfig(path=tmp_path / "sub" / ".." / "buffer.db")
        (tmp_path / "sub").mkdir()
        with pytest.raises(BufferStorageError, match="in use"):
            async with Buffer(other):
                pass
        # The refused opener left the running buffer intact.
        buffer.submit(readings(1))
        await buffer.flush()
        assert len(await read_all(buffer)) == 2
    assert buffer_threads() == []


async def test_the_lock_is_released_on_close(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(3))
        await buffer.flush()
        last = buffer.last_seq
    assert lock_path_of(cfg.path).exists()
    assert lock_is_free(cfg.path)
    async with Buffer(cfg) as buffer:
        assert buffer.last_seq == last
        assert len(await read_all(buffer)) == 3




@pytest.mark.integration
async def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'a')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n",
        str(lock_path_of(cfg.path)),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    assert await asyncio.wait_for(holder.stdout.readline(), 10) == b"locked\n"
    try:
        with pytest.raises(BufferStorageError, match="in use"):
            async with Buffer(cfg):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    async with Buffer(cfg) as buffer:  # no stale lock after kill -9
        buffer.submit(readings(1))
        await buffer.flush()


async def test_a_running_buffer_can_be_read_by_other_connections(tmp_path: Path) -> None:
    cfg = config(tmp_path, flush_interval=60)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(10))
        await buffer.flush()
        first, last = accepted_range(cfg.path)
        assert (first, last) == (buffer.first_seq_this_run, buffer.last_seq)
        reader = open_readonly(cfg.path)
        try:
            reader.execute("BEGIN")  # a snapshot held across the writer's commits
            assert reader.execute("SELECT count(*) FROM outbox").fetchone()[0] == 10
            buffer.submit(readings(5))
            await buffer.flush()  # the writer is not blocked by the open snapshot
            batch = await buffer.read(0, 100)
            assert batch is not None
            assert await buffer.ack(batch.first, batch.first + 2) == 3
            assert reader.execute("SELECT count(*) FROM outbox").fetchone()[0] == 10
            reader.execute("COMMIT")
            assert reader.execute("SELECT count(*) FROM outbox").fetchone()[0] == 12
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.execute("DELETE FROM outbox")
        finally:
            reader.close()
        assert accepted_range(cfg.path) == (first, buffer.last_seq)
    assert accepted_range(cfg.path) == (first, last + 5)  # type: ignore[operator]


async def test_open_readonly_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BufferStorageError, match="no buffer file at"):
        open_readonly(tmp_path / "missing.db")
    with pytest.raises(BufferStorageError, match="is not a file"):
        open_readonly(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite" * 500)
    with pytest.raises(BufferStorageError, match="not a fieldgate buffer"):
        open_readonly(garbage)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(BufferStorageError, match="not a fieldgate buffer"):
        open_readonly(foreign)
    assert garbage.read_bytes() == b"not sqlite" * 500


async def test_foreign_sqlite_database_is_not_touched_and_unlocked(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    with pytest.raises(BufferStorageError, match="not a fieldgate buffer"):
        async with Buffer(config(tmp_path)):
            pass
    assert lock_is_free(path)  # a failed open releases the lock file
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]


# -- corruption ----------------------------------------------------------------------------


async def test_garbage_file_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "buffer.db"
    path.write_bytes(b"this is not an sqlite file at all" * 200)
    before = time.time_ns() // 1000
    with caplog.at_level(logging.ERROR, logger="gateway.buffer"):
        async with Buffer(config(tmp_path)) as buffer:
            buffer.submit(readings(2))
            await buffer.flush()
            assert buffer.first_seq_this_run is not None
            assert buffer.first_seq_this_run >= before
    aside = corrupt_files(tmp_path)
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not an sqlite file")
    assert "corrupt" in caplog.text and str(aside[0]) in caplog.text


async def test_damaged_pages_are_detected_and_moved_aside(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(20_000))
        await buffer.flush()
        old_last = buffer.last_seq
    path = tmp_path / "buffer.db"
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 10 * page
    for offset in range(3 * page, 6 * page, 7):  # scribble over interior/leaf pages
        data[offset] = 0xA5
    path.write_bytes(bytes(data))

    async with Buffer(cfg) as buffer:
        assert buffer.last_seq is None  # a fresh file
        assert await buffer.read(0, 10) is None
        buffer.submit(readings(1))
        await buffer.flush()
        assert old_last is not None and buffer.last_seq is not None
    assert len(corrupt_files(tmp_path)) == 1


# -- bounds --------------------------------------------------------------------------------


async def test_max_bytes_drops_the_oldest_and_counts_exactly(tmp_path: Path) -> None:
    limit = 256 * 1024
    reported: list[int] = []
    cfg = config(tmp_path, max_bytes=limit)
    total = 40_000
    async with Buffer(cfg, on_overflow=reported.append) as buffer:
        for chunk in range(total // 1000):
            buffer.submit(readings(1000, start=chunk * 1000))
            await buffer.flush()
        status = await buffer.status()
        rows = await read_all(buffer)
        pages = await buffer._run_in_db(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        dropped = buffer.dropped
        first = buffer.first_seq_this_run
    assert first is not None
    assert dropped > 0
    assert status.dropped == dropped == sum(reported)
    assert status.depth == len(rows) == total - dropped
    # The survivors are exactly the newest readings, in order.
    assert [r[0] for r in rows] == list(range(first + dropped, first + total))
    assert [r[3] for r in rows] == [float(i) for i in range(dropped, total)]
    # The file is bounded: a little slack for the estimate, never a runaway.
    assert pages * 4096 <= limit * 1.1
    async with Buffer(cfg) as buffer:  # the counter is persisted
        assert buffer.dropped == dropped


async def test_max_age_drops_old_readings(tmp_path: Path) -> None:
    reported: list[int] = []
    now = now_ms()
    async with Buffer(config(tmp_path, max_age="1m"), on_overflow=reported.append) as buffer:
        buffer.submit(readings(30, ts=now - 3_600_000))
        buffer.submit(readings(5, ts=now))
        await buffer.flush()
        rows = await read_all(buffer)
        assert len(rows) == 5
        assert buffer.dropped == 30 == sum(reported)
        assert (await buffer.status()).oldest_ts == now


async def test_max_age_sweeps_while_idle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.buffer._AGE_CHECK_INTERVAL", 0.05)
    swept = asyncio.Event()
    reported: list[int] = []

    def on_overflow(n: int) -> None:
        reported.append(n)
        if sum(reported) >= 10:
            swept.set()

    async with Buffer(config(tmp_path, max_age=0.3), on_overflow=on_overflow) as buffer:
        buffer.submit(readings(10))
        await buffer.flush()
        assert len(await read_all(buffer)) == 10
        await asyncio.wait_for(swept.wait(), 5)  # no submit, no flush: the idle writer sweeps
        assert buffer.dropped == 10
        assert await buffer.read(0, 10) is None


async def test_max_pending_drops_the_oldest_in_memory(tmp_path: Path) -> None:
    reported: list[int] = []
    async with Buffer(
        config(tmp_path, max_pending=100, flush_interval=60), on_overflow=reported.append
    ) as buffer:
        buffer.submit(readings(30))
        buffer.submit(readings(90, start=30))
        assert buffer.pending == 100 and buffer.dropped == 20
        await buffer.flush()
        assert [r[3] for r in await read_all(buffer)] == [float(i) for i in range(20, 120)]
        assert sum(reported) == 20
    async with Buffer(config(tmp_path)) as buffer:
        assert buffer.dropped == 20


# -- storage failures ----------------------------------------------------------------------


def _set_max_pages(pages: int | None) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        current = conn.execute("PRAGMA page_count").fetchone()[0]
        limit = current + 0 if pages is None else pages
        return int(conn.execute(f"PRAGMA max_page_count={limit}").fetchone()[0])

    return run


async def test_disk_full_keeps_readings_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, max_pending=50_000, flush_interval=0.01, max_bytes=None)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(100))
        await buffer.flush()
        await buffer._run_in_db(_set_max_pages(None))  # the "disk" is now full

        with caplog.at_level(logging.ERROR, logger="gateway.buffer"):
            buffer.submit(readings(20_000, start=100))
            with pytest.raises(BufferStorageError, match="full") as raised:
                await buffer.flush()
            assert "full" in raised.value.reason
            assert buffer.error is not None and "full" in buffer.error
            assert buffer.pending == 20_000
            # More readings and retries: the writer keeps running and logs the condition once.
            buffer.submit(readings(100, start=20_100))
            with pytest.raises(BufferStorageError):
                await buffer.flush()
        assert caplog.text.count("refuses writes") == 1
        assert buffer.pending == 20_100
        assert (await buffer.status()).depth == 20_200
        assert len(await read_all(buffer)) == 100  # committed rows are still readable

        await buffer._run_in_db(_set_max_pages(1_000_000))
        await buffer.flush()
        assert buffer.error is None and buffer.pending == 0
        values = [r[3] for r in await read_all(buffer)]
        assert values == [float(i) for i in range(20_200)]
        assert buffer.dropped == 0


async def test_disk_full_beyond_max_pending_drops_oldest_pending(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_pending=1_000, flush_interval=0.01)
    async with Buffer(cfg) as buffer:
        buffer.submit(readings(10))
        await buffer.flush()
        await buffer._run_in_db(_set_max_pages(None))
        for chunk in range(5):
            buffer.submit(readings(500, start=10 + chunk * 500))
            with pytest.raises(BufferStorageError):
                await buffer.flush()
        assert buffer.pending == 1_000 and buffer.dropped == 1_500
        await buffer._run_in_db(_set_max_pages(1_000_000))
        await buffer.flush()
        values = [r[3] for r in await read_all(buffer)]
        assert values == [float(i) for i in range(10)] + [float(i) for i in range(1510, 2510)]
        assert (await buffer.status()).dropped == 1_500


async def test_retry_happens_without_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.buffer._RETRY_DELAY", 0.05)
    async with Buffer(config(tmp_path, flush_interval=0.01)) as buffer:
        buffer.submit(readings(1))
        await buffer.flush()
        last = buffer.last_seq
        assert last is not None
        await buffer._run_in_db(_set_max_pages(None))
        buffer.submit(readings(5_000))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(buffer.wait_for_data(last), 0.3)  # several attempts fail
        assert buffer.error is not None and buffer.pending == 5_000
        await buffer._run_in_db(_set_max_pages(1_000_000))
        await asyncio.wait_for(buffer.wait_for_data(last), 5)  # the writer retries by itself
        assert buffer.pending == 0 and buffer.error is None
        assert buffer.last_seq == last + 5_000


def test_outbox_batch_first_last_len() -> None:
    batch = OutboxBatch(
        seqs=[5, 6, 9],
        series=[("d", "t")],
        s=[0, 0, 0],
        t=[1, 2, 3],
        val=[1, 2, 3],
        q=[0, 0, 0],
        why={},
    )
    assert (batch.first, batch.last, len(batch)) == (5, 9, 3)
    assert decode_batch(batch.encode()).seq == [5, 6, 9]
