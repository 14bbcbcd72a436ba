"""``fieldgate buffer stats|inspect|export``: look into a gateway's outbox, read-only.

Every command opens the buffer file through :func:`gateway.buffer.open_readonly`, so it
works on a stopped buffer and on one a running gateway is writing (a WAL snapshot: the
gateway is never blocked and the file never modified). The file is named either by the
gateway config (``-c gateway.yaml``, whose ``buffer.path`` is taken relative to the
current directory, exactly as ``fieldgate gateway run`` does) or directly (``--path``).

Built on sqlite-utils (queries as dictionaries); the gateway's hot path does not use it.
Human output is Rich tables; ``--json`` prints one JSON document for machines. Errors
(missing file, not a fieldgate buffer, invalid config) go to stderr with exit code 1.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from sqlite_utils import Database

from gateway.buffer import BufferStorageError, lock_path_of, open_readonly
from gateway.errors import ConfigError

__all__ = [
    "BufferStats",
    "ExportFormat",
    "ExportRow",
    "SeriesSummary",
    "app",
    "buffer_stats",
    "export_rows",
    "resolve_path",
    "series_summary",
    "tail_rows",
]

app = typer.Typer(
    help="Inspect a gateway's store-and-forward buffer (read-only; works while it runs).",
    no_args_is_help=True,
)

_QUALITY_NAMES = ("good", "uncertain", "bad")
_ROW_SQL = (
    "SELECT o.seq AS seq, s.device AS device, s.tag AS tag, s.kind AS kind, o.ts AS ts, "
    "o.value AS value, o.quality AS quality, o.reason AS reason "
    "FROM outbox AS o JOIN series AS s ON s.id = o.series"
)
EXPORT_FIELDS = ("seq", "device", "tag", "ts", "value", "quality", "reason")
"""Columns of ``export``, in order (CSV header, JSON object keys)."""


# -- reading the file ----------------------------------------------------------------------


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC with milliseconds and ``Z``."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _quality_name(code: int) -> str | int:
    return _QUALITY_NAMES[code] if 0 <= code < len(_QUALITY_NAMES) else code


def _decode(kind: str, value: Any) -> Any:
    """The reading's value as the gateway would send it (see the buffer's series kinds)."""
    if value is None:
        return None
    if kind == "bool":
        return bool(value)
    if kind == "bigint":
        return int(value)
    return value


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[Database]:
    """A sqlite-utils Database on a read-only connection inside one read transaction, so
    every query of a command sees the same committed state."""
    conn = open_readonly(path)
    try:
        conn.execute("BEGIN")
        yield Database(conn, execute_plugins=False, recursive_triggers=False)
    except sqlite3.Error as exc:
        raise BufferStorageError(f"cannot read {path}: {exc}", str(exc)) from exc
    finally:
        conn.close()


def gateway_running(path: Path) -> bool:
    """Whether a gateway holds the buffer's lock file now. Probes with a shared lock that
    is released at once (a gateway starting in that instant waits and retries)."""
    try:
        fd = os.open(lock_path_of(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our probe lock
    return False


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    """time.monotonic() when the snapshot was taken."""
    depth: int
    oldest_seq: int | None
    oldest_ts: int | None
    dropped: int
    created_seq: int
    next_seq: int
    series: int
    used_bytes: int


def _sample(path: Path) -> _Sample:
    with _snapshot(path) as db:
        at = time.monotonic()
        meta = {row["key"]: row["value"] for row in db.query("SELECT key, value FROM meta")}
        head = next(db.query("SELECT seq, ts FROM outbox ORDER BY seq LIMIT 1"), None)
        depth = next(db.query("SELECT count(*) AS n FROM outbox"))["n"]
        series = next(db.query("SELECT count(*) AS n FROM series"))["n"]
        pages = next(db.query("PRAGMA page_count"))["page_count"]
        free = next(db.query("PRAGMA freelist_count"))["freelist_count"]
        page_size = next(db.query("PRAGMA page_size"))["page_size"]
    return _Sample(
        at=at,
        depth=int(depth),
        oldest_seq=None if head is None else int(head["seq"]),
        oldest_ts=None if head is None else int(head["ts"]),
        dropped=int(meta["dropped"]),
        created_seq=int(meta["created_seq"]),
        next_seq=int(meta["next_seq"]),
        series=int(series),
        used_bytes=int((pages - free) * page_size),
    )


def _file_bytes(path: Path) -> int:
    """The database plus its WAL on disk (what the buffer costs the file system)."""
    size = 0
    for name in (path, Path(f"{path}-wal")):
        with contextlib.suppress(FileNotFoundError):
            size += name.stat().st_size
    return size


@dataclass(frozen=True, slots=True)
class BufferStats:
    """What ``fieldgate buffer stats`` reports. Sequence numbers are the gateway's."""

    path: str
    gateway_running: bool
    depth: int
    """Readings committed and not yet acknowledged by the uplink."""
    oldest_seq: int | None
    oldest_ts: str | None
    """Sample time of the oldest buffered reading (the next to be sent), ISO 8601 UTC."""
    oldest_age_s: float | None
    file_bytes: int
    """Database plus WAL on disk."""
    used_bytes: int
    """Pages in use; what ``buffer.max_bytes`` bounds."""
    dropped: int
    """Readings dropped by the bounds over the file's lifetime."""
    first_accepted_seq: int | None
    last_accepted_seq: int | None
    next_seq: int
    series: int
    window_s: float | None
    """Seconds between the two samples the rates come from (``None``: no rates)."""
    accepted_per_s: float | None
    """Readings committed to the file per second over the window."""
    drained_per_s: float | None
    """Readings acknowledged (deleted after delivery) per second over the window; readings
    dropped in memory during a disk-full condition in the window make it read low."""


def buffer_stats(path: Path, window: float = 1.0) -> BufferStats:
    """Sample the buffer, and again after ``window`` seconds for the rates (``window`` 0:
    one sample, no rates). Raises :class:`BufferStorageError` (see ``open_readonly``)."""
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    first = _sample(path)
    last = first
    if window > 0:
        time.sleep(window)
        last = _sample(path)
    elapsed = last.at - first.at
    accepted_rate = drained_rate = None
    if window > 0 and elapsed > 0:
        accepted = last.next_seq - first.next_seq
        drained = accepted - (last.depth - first.depth) - (last.dropped - first.dropped)
        accepted_rate = accepted / elapsed
        drained_rate = max(0, drained) / elapsed
    now_ms = time.time_ns() // 1_000_000
    return BufferStats(
        path=str(path),
        gateway_running=gateway_running(path),
        depth=last.depth,
        oldest_seq=last.oldest_seq,
        oldest_ts=None if last.oldest_ts is None else iso_ms(last.oldest_ts),
        oldest_age_s=None if last.oldest_ts is None else (now_ms - last.oldest_ts) / 1000,
        file_bytes=_file_bytes(path),
        used_bytes=last.used_bytes,
        dropped=last.dropped,
        first_accepted_seq=last.created_seq if last.next_seq > last.created_seq else None,
        last_accepted_seq=last.next_seq - 1 if last.next_seq > last.created_seq else None,
        next_seq=last.next_seq,
        series=last.series,
        window_s=elapsed if accepted_rate is not None else None,
        accepted_per_s=accepted_rate,
        drained_per_s=drained_rate,
    )


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """One (device, tag) in the buffer; a tag whose value type changed has several stored
    series, summed here. ``rows`` 0: known tag, nothing buffered."""

    device: str
    tag: str
    rows: int
    oldest_ts: str | None
    newest_ts: str | None
    first_seq: int | None
    last_seq: int | None


def _series_filter(device: str | None, tag: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    if device is not None:
        clauses.append("s.device = ?")
        params.append(device)
    if tag is not None:
        clauses.append("s.tag = ?")
        params.append(tag)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def series_summary(
    path: Path, *, device: str | None = None, tag: str | None = None
) -> list[SeriesSummary]:
    """Rows and time span per (device, tag), sorted by device then tag. Scans the outbox
    once. Raises :class:`BufferStorageError`."""
    where, params = _series_filter(device, tag)
    with _snapshot(path) as db:
        names = {
            row["id"]: (row["device"], row["tag"])
            for row in db.query(f"SELECT s.id, s.device, s.tag FROM series AS s{where}", params)
        }
        counts = db.query(
            "SELECT series, count(*) AS rows, min(ts) AS lo, max(ts) AS hi, "
            "min(seq) AS first, max(seq) AS last FROM outbox GROUP BY series"
        )
        merged: dict[tuple[str, str], list[Any]] = {
            key: [0, None, None, None, None] for key in names.values()
        }
        for row in counts:
            key = names.get(row["series"])
            if key is None:
                continue  # filtered out
            acc = merged[key]
            acc[0] += row["rows"]
            acc[1] = row["lo"] if acc[1] is None else min(acc[1], row["lo"])
            acc[2] = row["hi"] if acc[2] is None else max(acc[2], row["hi"])
            acc[3] = row["first"] if acc[3] is None else min(acc[3], row["first"])
            acc[4] = row["last"] if acc[4] is None else max(acc[4], row["last"])
    return [
        SeriesSummary(
            device=key[0],
            tag=key[1],
            rows=rows,
            oldest_ts=None if lo is None else iso_ms(lo),
            newest_ts=None if hi is None else iso_ms(hi),
            first_seq=first,
            last_seq=last,
        )
        for key, (rows, lo, hi, first, last) in sorted(merged.items())
    ]


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One buffered reading as exported: ISO timestamp, decoded value, quality name."""

    seq: int
    device: str
    tag: str
    ts: str
    value: Any
    quality: str | int
    reason: str | None


def _export_row(row: dict[str, Any]) -> ExportRow:
    return ExportRow(
        seq=row["seq"],
        device=row["device"],
        tag=row["tag"],
        ts=iso_ms(row["ts"]),
        value=_decode(row["kind"], row["value"]),
        quality=_quality_name(row["quality"]),
        reason=row["reason"],
    )


def tail_rows(
    path: Path, n: int, *, device: str | None = None, tag: str | None = None
) -> list[ExportRow]:
    """The newest ``n`` buffered readings (matching the filters), oldest first."""
    if n <= 0:
        return []
    where, params = _series_filter(device, tag)
    with _snapshot(path) as db:
        rows = list(db.query(f"{_ROW_SQL}{where} ORDER BY o.seq DESC LIMIT ?", [*params, n]))
    return [_export_row(row) for row in reversed(rows)]


@contextlib.contextmanager
def export_rows(
    path: Path, *, device: str | None = None, tag: str | None = None
) -> Iterator[Iterator[ExportRow]]:
    """``with export_rows(path) as rows:`` — every buffered reading matching the filters
    in sequence order, streamed from one snapshot (memory stays flat for any depth).
    While it is open a running gateway keeps writing, but its WAL cannot be reset past
    the snapshot, so keep exports of a busy gateway short-lived."""
    where, params = _series_filter(device, tag)
    with _snapshot(path) as db:
        yield (_export_row(row) for row in db.query(f"{_ROW_SQL}{where} ORDER BY o.seq", params))


def resolve_path(config: Path | None, path: Path | None) -> Path:
    """The buffer file named by exactly one of ``--config`` and ``--path``. Raises
    :class:`typer.BadParameter` for none or both, :class:`ConfigError` for a bad config."""
    if (config is None) == (path is None):
        raise typer.BadParameter("give exactly one of --config/-c GATEWAY.yaml or --path FILE")
    if path is not None:
        return path
    from gateway.loader import load_config  # loads the adapter registry: only when needed

    assert config is not None
    return load_config(config).buffer.path


# -- output --------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) < 10**12 else str(value)  # keep seqs copyable
    return str(value)


def _dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str)


def _jsonl(row: ExportRow) -> bytes:
    data = asdict(row)
    try:
        return orjson.dumps(data) + b"\n"
    except orjson.JSONEncodeError:  # an integer beyond 64 bits: exact in plain JSON
        return json.dumps(data, ensure_ascii=False).encode() + b"\n"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Gateway config (YAML); its buffer.path is read", show_default=False
    ),
]
PathOption = Annotated[
    Path | None, typer.Option("--path", help="The buffer file itself", show_default=False)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="Only this device")]
TagOption = Annotated[str | None, typer.Option("--tag", help="Only this tag")]


def _path_or_exit(config: Path | None, path: Path | None) -> Path:
    try:
        return resolve_path(config, path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def stats(
    config: ConfigOption = None,
    path: PathOption = None,
    window: Annotated[
        float, typer.Option(min=0.0, help="Seconds between the two samples the rates use")
    ] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Depth, oldest reading, size, drops, sequence numbers and accepted/drained rates."""
    target = _path_or_exit(config, path)
    try:
        result = buffer_stats(target, window)
    except BufferStorageError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(_dump_json(asdict(result)))
        return
    table = Table(title=f"buffer {target}", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right", overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("gateway running", "yes" if result.gateway_running else "no"),
        ("depth (readings)", result.depth),
        ("oldest reading", result.oldest_ts),
        ("oldest age (s)", result.oldest_age_s),
        ("file bytes (db + WAL)", result.file_bytes),
        ("used bytes (pages)", result.used_bytes),
        ("dropped (lifetime)", result.dropped),
        ("stored series", result.series),
        ("first accepted seq", result.first_accepted_seq),
        ("last accepted seq", result.last_accepted_seq),
        ("next seq", result.next_seq),
        ("oldest buffered seq", result.oldest_seq),
        ("accepted /s", result.accepted_per_s),
        ("drained /s", result.drained_per_s),
    ]
    for name, value in rows:
        table.add_row(name, _fmt(value))
    Console().print(table)


@app.command()
def inspect(
    config: ConfigOption = None,
    path: PathOption = None,
    tail: Annotated[int, typer.Option(min=0, help="Also show the newest N readings")] = 0,
    device: DeviceOption = None,
    tag: TagOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per series: device, tag, buffered rows, oldest/newest sample time; --tail N rows."""
    target = _path_or_exit(config, path)
    try:
        summary = series_summary(target, device=device, tag=tag)
        newest = tail_rows(target, tail, device=device, tag=tag)
    except BufferStorageError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        document: dict[str, Any] = {
            "path": str(target),
            "series": [asdict(s) for s in summary],
        }
        if tail:
            document["tail"] = [asdict(r) for r in newest]
        typer.echo(_dump_json(document))
        return
    console = Console()
    table = Table(title=f"buffer {target}: {len(summary)} series")
    for name in ("device", "tag", "rows", "oldest", "newest", "first seq", "last seq"):
        numeric = name in ("rows", "first seq", "last seq")
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    for s in summary:
        table.add_row(
            s.device,
            s.tag,
            _fmt(s.rows),
            _fmt(s.oldest_ts),
            _fmt(s.newest_ts),
            _fmt(s.first_seq),
            _fmt(s.last_seq),
        )
    console.print(table)
    if tail:
        rows = Table(title=f"newest {len(newest)} readings")
        for name in EXPORT_FIELDS:
            numeric = name in ("seq", "value")
            rows.add_column(name, justify="right" if numeric else "left", overflow="fold")
        for r in newest:
            rows.add_row(
                str(r.seq), r.device, r.tag, r.ts, _fmt(r.value), str(r.quality), _fmt(r.reason)
            )
        console.print(rows)


def _csv_value(value: Any) -> Any:
    """Empty for null, JSON's spelling for booleans, everything else as Python writes it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class ExportFormat(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def _write_export(rows: Iterator[ExportRow], out: IO[bytes], fmt: ExportFormat) -> int:
    """Write ``rows`` to ``out`` (left open); returns how many were written."""
    n = 0
    if fmt is ExportFormat.jsonl:
        for row in rows:
            out.write(_jsonl(row))
            n += 1
        return n
    # csv writes text; wrap the binary stream without closing it afterwards.
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    try:
        writer = csv.writer(text)
        writer.writerow(EXPORT_FIELDS)
        for row in rows:
            writer.writerow(
                (
                    row.seq,
                    row.device,
                    row.tag,
                    row.ts,
                    _csv_value(row.value),
                    row.quality,
                    "" if row.reason is None else row.reason,
                )
            )
            n += 1
        text.flush()
    finally:
        text.detach()
    return n


@app.command()
def export(
    config: ConfigOption = None,
    path: PathOption = None,
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="csv, or jsonl (JSON lines)")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    device: DeviceOption = None,
    tag: TagOption = None,
) -> None:
    """Every buffered reading in sequence order: seq, device, tag, ts (ISO 8601 UTC),
    value, quality, reason. CSV has a header line; empty cells are null."""
    target = _path_or_exit(config, path)
    try:
        with export_rows(target, device=device, tag=tag) as rows:
            if output is None:
                count = _write_export(rows, sys.stdout.buffer, fmt)
                sys.stdout.buffer.flush()
            else:
                with output.open("wb") as out:
                    count = _write_export(rows, out, fmt)
    except BufferStorageError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _fail(f"cannot write {output}: {exc}") from None
    if output is not None:
        typer.echo(f"exported {count} readings to {output}", err=True)
