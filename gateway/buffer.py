"""The durable outbox between the pipeline and the uplink (DESIGN §3, store-and-forward).

Readings are queued in memory by :meth:`Buffer.submit` (synchronous, never blocks) and
committed by one writer task to an SQLite file, many readings per transaction. The
forwarder reads the oldest committed readings with :meth:`Buffer.read`, sends them and
deletes them with :meth:`Buffer.ack` only once the uplink has acknowledged them, so
delivery is at-least-once; the cloud de-duplicates on (gateway id, sequence number).

Sequence numbers
    Every committed reading gets a gateway-wide sequence number, assigned at commit in
    submit order (so per-tag order is preserved), strictly increasing and never reused:
    the next number is persisted in the ``meta`` table in the same transaction as the
    rows, and survives the deletion of every row. SQLite's rowid allocation is not used
    (it restarts at ``max(rowid) + 1``, i.e. it would reuse numbers after a full drain).
    When the buffer file is created fresh — first start, or after a corrupt file was moved
    aside — numbering starts at the current time in microseconds (``time.time_ns() //
    1000``). The cloud may already hold numbers from an earlier file; starting from the
    clock keeps a recreated buffer above them as long as the old file consumed fewer than
    one number per microsecond on average (i.e. < 1M readings/s sustained) and the clock
    has not been set back. Such numbers (~1.8e15) stay below 2**53, so they are exact in
    JSON for any consumer.

Storage
    WAL journal, ``synchronous=NORMAL`` (default; a power loss may lose the last
    transactions, never corrupts) or ``FULL`` (every commit is on the medium).

Locking
    One writer per file: a second gateway opening the same buffer would hand out the same
    sequence numbers, so it is refused. The guard is an advisory lock
    (``flock(LOCK_EX | LOCK_NB)``) on ``<name>.lock`` next to the file, taken before the
    database is opened and held for the life of the Buffer; the kernel releases it when
    the process dies, even by SIGKILL, so a stale lock never blocks a restart. The lock
    file itself is left in place (removing it would let two openers lock different
    inodes). SQLite itself runs with normal locking, so read-only connections — the
    ``fieldgate buffer`` CLI, :func:`accepted_range`, benchmarks — read a consistent WAL
    snapshot while the gateway writes, without blocking it. The WAL shared-memory index
    this needs costs nothing measurable against exclusive locking (insert and drain rates
    within the run-to-run noise of ~2-5 %).

Rows
    Each (device, tag, kind) is stored once in ``series``; an outbox row holds only seq,
    series id, ts, value, quality and reason. ``value`` is a column without declared type
    (no affinity) so SQLite keeps what it was given: ``3.0`` stays REAL and ``"12"`` stays
    TEXT (a column declared ``ANY`` would have NUMERIC affinity and turn both into
    integer). The series ``kind`` restores what SQLite cannot: bools (stored as 0/1) and
    integers beyond 64 bits (stored as text). NaN is stored as NULL by SQLite and comes
    back as ``None`` (JSON has no NaN either).

Bounds and failures
    ``max_bytes`` bounds the pages in use (``(page_count - freelist_count) *
    page_size``); room is made *before* each insert by deleting the oldest rows, so freed
    pages are reused and the file does not outgrow the bound by more than an estimate
    error. ``max_age`` drops the oldest rows whose sample time is older than the limit.
    Both are counted in the persisted ``dropped`` counter, logged and reported through
    ``on_overflow``. A commit that fails (disk full, read-only file, I/O error) keeps the
    readings in memory (at most ``max_pending``; beyond that the oldest are dropped and
    counted), exposes the condition in :attr:`Buffer.error` and is retried. A corrupt file
    found at open is renamed to ``<name>.corrupt-<UTC timestamp>`` and a fresh buffer
    is started.

Threads
    All database work runs in one dedicated worker thread (one connection, one writer);
    the event loop only swaps lists and resolves futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import math
import numbers
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from adapters.base import Reading, Value
from cloud.contract import MAX_BATCH_POINTS, BufferStatus, encode_batch
from gateway.config_types import ByteSize, Duration
from gateway.errors import GatewayError

__all__ = [
    "Buffer",
    "BufferConfig",
    "BufferStorageError",
    "OutboxBatch",
    "accepted_range",
    "lock_path_of",
    "open_readonly",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

FORMAT_VERSION = 1
MIN_MAX_BYTES = 64 * 1024
"""Below this the schema pages alone would eat the bound."""
_JOURNAL_SIZE_LIMIT = 32 * 1024 * 1024
"""The WAL is truncated back to this (or max_bytes/4) after a checkpoint that outgrew it."""
_AGE_CHECK_INTERVAL = 1.0
"""Seconds between ``max_age`` sweeps; a sweep that finds nothing costs one index probe."""
_RETRY_DELAY = 1.0
"""Seconds between commit attempts while the file refuses writes (unless flush() asks)."""
_DROP_LOG_INTERVAL = 30.0
"""Seconds between two warnings about dropped readings (the count is aggregated)."""
_LOCK_TIMEOUT = 2.0
"""Seconds to wait at open for the lock file held by another process (e.g. a gateway still
shutting down), and SQLite's busy timeout."""
_LOCK_POLL = 0.05
"""Seconds between two attempts to take the lock file while another process holds it."""
LOCK_SUFFIX = ".lock"
"""The advisory lock file is ``<buffer path>.lock``."""
_DEFAULT_ROW_BYTES = 48
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _BigInt:
    """Series key marker for integers beyond 64 bits, which SQLite cannot store as INTEGER."""


_NONE_TYPE = type(None)
_KIND_OF_KEY: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    _NONE_TYPE: "none",
    _BigInt: "bigint",
}
_KEY_OF_KIND = {kind: key for key, kind in _KIND_OF_KEY.items()}
_DECODERS: dict[str, Callable[[Any], Value]] = {
    "bool": lambda v: None if v is None else bool(v),
    "bigint": lambda v: None if v is None else int(v),
}
"""Kinds whose stored form differs from the Python value; all others come back as stored."""

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    tag TEXT NOT NULL,
    kind TEXT NOT NULL,
    UNIQUE (device, tag, kind)
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value,
    quality INTEGER NOT NULL,
    reason TEXT
);
"""
_INSERT = "INSERT INTO outbox (seq, series, ts, value, quality, reason) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT = (
    "SELECT seq, series, ts, value, quality, reason FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"
)
_SET_META = "UPDATE meta SET value = ? WHERE key = ?"


class BufferConfig(BaseModel):
    """The ``buffer:`` section of the gateway config."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Field(default=Path("data/buffer.db"), description="The SQLite outbox file")
    durability: Literal["normal", "full"] = Field(
        default="normal",
        description="normal: synchronous=NORMAL (a power loss may lose the last commits); "
        "full: synchronous=FULL (every commit survives a power loss)",
    )
    max_bytes: ByteSize | None = Field(
        default=1024**3, description="Bound of the stored readings; the oldest are dropped beyond"
    )
    max_age: Duration | None = Field(
        default=None, description="Readings sampled longer ago than this are dropped"
    )
    overflow: Literal["drop_oldest"] = Field(
        default="drop_oldest", description="What happens when a bound is reached"
    )
    flush_interval: Duration = Field(
        default=0.05, description="How long the writer lets submitted readings accumulate"
    )
    max_pending: int = Field(
        default=200_000,
        gt=0,
        description="Readings held in memory waiting for the writer (e.g. while the disk is "
        "full); the oldest are dropped beyond",
    )

    @field_validator("max_bytes")
    @classmethod
    def _room_for_schema(cls, value: int | None) -> int | None:
        if value is not None and value < MIN_MAX_BYTES:
            raise ValueError(f"must be at least {MIN_MAX_BYTES} bytes (64KiB), got {value}")
        return value


class BufferStorageError(GatewayError):
    """The buffer file cannot be used: refused writes (disk full, read-only, I/O error),
    in use by another process, or not a fieldgate buffer. ``reason`` is SQLite's message."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


@dataclass(slots=True)
class OutboxBatch:
    """Consecutive committed readings in columnar form, ready for ``encode_batch``.

    Reading ``i`` is ``series[s[i]]`` at ``t[i]`` with value ``val[i]``, quality ``q[i]``,
    reason ``why.get(i)`` and sequence number ``seqs[i]`` (strictly increasing; not
    necessarily contiguous after acks or drops).
    """

    seqs: list[int]
    series: list[tuple[str, str]]
    s: list[int]
    t: list[int]
    val: list[Value]
    q: list[int]
    why: dict[int, str]

    @property
    def first(self) -> int:
        return self.seqs[0]

    @property
    def last(self) -> int:
        return self.seqs[-1]

    def __len__(self) -> int:
        return len(self.seqs)

    def encode(self) -> bytes:
        """The telemetry payload of DESIGN §4 (JSON bytes)."""
        return encode_batch(self.seqs, self.series, self.s, self.t, self.val, self.q, self.why)


class _Opened(NamedTuple):
    last_seq: int | None
    dropped: int
    depth: int


class _Committed(NamedTuple):
    first_seq: int | None
    """The first sequence number of this commit; ``None`` when no reading was written."""
    last_seq: int | None
    dropped_now: int
    """Rows deleted by the bounds in this transaction."""
    dropped_total: int


class _StatusRow(NamedTuple):
    depth: int
    bytes: int
    oldest_ts: int | None


class _Corrupt(Exception):
    """``PRAGMA quick_check`` found damage."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by the module rather than by SQLite: judge by the message
        return "not a database" in str(exc) or "malformed" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _normalise(value: Any) -> tuple[type, Value]:
    """The series key type and the storable form of a value (slow path only)."""
    kind = type(value)
    if kind in (bool, float, str, _NONE_TYPE):
        return kind, value
    if isinstance(value, bool):
        return bool, bool(value)
    if isinstance(value, numbers.Integral):  # int subclasses (IntEnum), numpy integers
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return int, number
        return _BigInt, str(number)
    if isinstance(value, numbers.Real):
        return float, float(value)
    if isinstance(value, str):
        return str, str(value)
    # An adapter broke the Value contract: keep the information rather than the reading's
    # ability to poison every later commit.
    return str, str(value)


class _Store:
    """The SQLite side. Every method runs in the buffer's single worker thread."""

    def __init__(self, config: BufferConfig) -> None:
        self._config = config
        self._path = config.path
        self._conn: sqlite3.Connection | None = None
        self._next_seq = 0
        self._created_seq = 0
        self._dropped = 0
        self._depth = 0
        self._page_size = 4096
        self._last_age_check = -math.inf
        # (device, tag, Python type of the value) -> series id: the hot-path lookup.
        self._sid: dict[tuple[str, str, type], int] = {}
        self._sid_by_kind: dict[tuple[str, str, str], int] = {}
        self._series: dict[int, tuple[str, str, str]] = {}
        self._warned_types: set[type] = set()
        self._lock_fd: int | None = None

    # -- open / close ---------------------------------------------------------------------

    def open(self) -> _Opened:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._storage_error("cannot create its directory", exc) from exc
        self._lock()
        try:
            return self._open_locked()
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        """Take the advisory lock file for the life of this store (released by close(), or
        by the kernel when the process dies). Waits up to ``_LOCK_TIMEOUT`` for a holder
        that is shutting down, then raises :class:`BufferStorageError`."""
        lock_path = lock_path_of(self._path)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._storage_error(f"cannot open its lock file {lock_path}", exc) from exc
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise self._in_use_error(fd, lock_path) from None
                    time.sleep(_LOCK_POLL)
                except OSError as exc:  # e.g. ENOLCK on a file system without locks
                    raise self._storage_error(f"cannot lock {lock_path}", exc) from exc
            # Who holds it, for the message the next opener prints; advisory only.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd

    def _in_use_error(self, fd: int, lock_path: Path) -> BufferStorageError:
        holder = ""
        with contextlib.suppress(OSError, ValueError):
            holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip())})"
        reason = f"{lock_path} is locked by another process{holder}"
        return BufferStorageError(
            f"buffer {self._path}: in use: {reason}; is another gateway process using "
            "this buffer? Each gateway needs its own buffer.path",
            reason,
        )

    def _open_locked(self) -> _Opened:
        try:
            conn = self._connect()
        except (sqlite3.DatabaseError, _Corrupt) as exc:
            if isinstance(exc, sqlite3.DatabaseError) and not _is_corruption(exc):
                raise self._storage_error("cannot open", exc) from exc
            self._move_aside(exc)
            try:
                conn = self._connect()
            except sqlite3.Error as exc2:
                raise self._storage_error("cannot create a fresh buffer", exc2) from exc2
        self._conn = conn
        try:
            self._load(conn)
        except sqlite3.Error as exc:
            raise self._storage_error("cannot load", exc) from exc
        last = None if self._next_seq == self._created_seq else self._next_seq - 1
        return _Opened(last, self._dropped, self._depth)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and committed explicitly, one per flush.
        conn = sqlite3.connect(self._path, timeout=_LOCK_TIMEOUT, isolation_level=None)
        try:
            # Normal (not exclusive) locking: readers may share the file; the lock file
            # keeps other writers out.
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL (journal_mode={mode})")
            synchronous = "FULL" if self._config.durability == "full" else "NORMAL"
            conn.execute(f"PRAGMA synchronous={synchronous}")
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise _Corrupt("; ".join(problems).replace("\n", "; "))
            self._page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            # The WAL is disk use too: keep it a fraction of a small bound (checkpoints then
            # run more often, which only costs when the bound is tiny).
            wal_bytes = _JOURNAL_SIZE_LIMIT
            if self._config.max_bytes is not None:
                wal_bytes = min(wal_bytes, self._config.max_bytes // 4)
            conn.execute(f"PRAGMA journal_size_limit={wal_bytes}")
            pages = max(4, min(1000, wal_bytes // self._page_size))
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _move_aside(self, exc: BaseException) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self._path.with_name(f"{self._path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self._path.with_name(f"{self._path.name}.corrupt-{stamp}-{n}")
        os.replace(self._path, target)
        # The WAL belongs to the damaged file: it must never be replayed into the fresh one.
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{self._path}{suffix}")
            if side.exists():
                os.replace(side, Path(f"{target}{suffix}"))
        logger.error(
            "buffer file %s is corrupt (%s); moved it to %s and started a fresh buffer "
            "(its undelivered readings are not sent)",
            self._path,
            exc,
            target,
        )

    def _load(self, conn: sqlite3.Connection) -> None:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            start = time.time_ns() // 1000
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("format", FORMAT_VERSION),
                    ("created_seq", start),
                    ("next_seq", start),
                    ("dropped", 0),
                ],
            )
            conn.execute("COMMIT")
            logger.info("created buffer %s; sequence numbers start at %d", self._path, start)
        elif not {"meta", "series", "outbox"} <= tables:
            raise BufferStorageError(
                f"{self._path} is an SQLite database but not a fieldgate buffer; "
                "refusing to modify it (set buffer.path to another file)"
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_VERSION:
            raise BufferStorageError(
                f"{self._path} has buffer format {meta.get('format')!r}, "
                f"this version reads format {FORMAT_VERSION}"
            )
        self._created_seq = int(meta["created_seq"])
        self._dropped = int(meta["dropped"])
        max_seq = conn.execute("SELECT max(seq) FROM outbox").fetchone()[0]
        # Defensive: meta and rows are written together, but never hand out a stored number.
        self._next_seq = max(int(meta["next_seq"]), (max_seq or 0) + 1)
        # One full count at open; afterwards the depth is maintained from row counts.
        self._depth = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        for sid, device, tag, kind in conn.execute("SELECT id, device, tag, kind FROM series"):
            self._remember_series(sid, device, tag, kind)

    def close(self) -> None:
        """Close the connection, then release the lock file. Idempotent."""
        try:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                conn.close()
        finally:
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                os.close(fd)  # closing the only descriptor releases the flock

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the buffer is not open")
        return self._conn

    def _storage_error(self, what: str, exc: BaseException) -> BufferStorageError:
        reason = str(exc)
        if isinstance(exc, sqlite3.Error) and "locked" in reason:
            reason = f"{reason} (is another gateway process using this buffer?)"
        return BufferStorageError(f"buffer {self._path}: {what}: {reason}", reason)

    # -- series ---------------------------------------------------------------------------

    def _remember_series(self, sid: int, device: str, tag: str, kind: str) -> None:
        self._series[sid] = (device, tag, kind)
        self._sid_by_kind[device, tag, kind] = sid
        self._sid[device, tag, _KEY_OF_KIND[kind]] = sid

    def _ensure_series(self, keys: Iterable[tuple[str, str, type, str]]) -> None:
        """Map every (device, tag, key type) to a series of ``kind``, creating missing series
        in their own transaction, so a failed data commit never leaves the cache ahead of
        the file."""
        missing = {(d, t, kind) for d, t, _, kind in keys if (d, t, kind) not in self._sid_by_kind}
        if missing:
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
                created = [
                    (
                        conn.execute(
                            "INSERT INTO series (device, tag, kind) VALUES (?, ?, ?)", key
                        ).lastrowid,
                        key,
                    )
                    for key in sorted(missing)
                ]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            for sid, (device, tag, kind) in created:
                self._remember_series(int(sid or 0), device, tag, kind)
        for device, tag, key, kind in keys:
            self._sid[device, tag, key] = self._sid_by_kind[device, tag, kind]

    def _fast_rows(self, batch: Sequence[Reading], first: int) -> list[tuple[Any, ...]]:
        sid = self._sid
        # The hot path: one comprehension, one dict probe per reading, values bound as is.
        return [
            (seq, sid[device, tag, type(value)], ts, value, quality, reason)
            for seq, (device, tag, ts, value, quality, reason) in zip(count(first), batch)
        ]

    def _rows(self, batch: Sequence[Reading], first: int) -> list[tuple[Any, ...]]:
        try:
            return self._fast_rows(batch, first)
        except KeyError:
            pass
        keys: dict[tuple[str, str, type], str] = {}
        for reading in batch:
            key = (reading[0], reading[1], type(reading[3]))
            if key in self._sid or key in keys:
                continue
            kind = _KIND_OF_KEY.get(key[2])
            if kind is None and issubclass(key[2], (int, float, str)) and key[2] is not bool:
                # Subclasses (IntEnum, numpy.float64) bind as their base type.
                kind = _KIND_OF_KEY[_normalise(reading[3])[0]]
            if kind is None:
                # Any other type would be bound raw (bytes as a BLOB that JSON cannot carry)
                # or refused: never cache it, normalise every value of this batch.
                return self._slow_rows(batch, first)
            keys[key] = kind  # a big int still maps to int; binding fails, slow path reroutes
        self._ensure_series([(d, t, k, kind) for (d, t, k), kind in keys.items()])
        return self._fast_rows(batch, first)

    def _slow_rows(self, batch: Sequence[Reading], first: int) -> list[tuple[Any, ...]]:
        """Rows for a batch the fast path could not bind (integers beyond 64 bits, foreign
        value types): each value is normalised to something SQLite and JSON can hold."""
        normalised = [_normalise(reading[3]) for reading in batch]
        keys: dict[tuple[str, str, type], str] = {}
        for reading, (key, _) in zip(batch, normalised, strict=True):
            keys.setdefault((reading[0], reading[1], key), _KIND_OF_KEY[key])
            kind = type(reading[3])
            if kind not in _KIND_OF_KEY and kind not in self._warned_types:
                self._warned_types.add(kind)
                logger.warning(
                    "%s.%s delivers values of type %s; stored as %s",
                    reading[0],
                    reading[1],
                    kind.__name__,
                    _KIND_OF_KEY[key],
                )
        self._ensure_series([(d, t, k, kind) for (d, t, k), kind in keys.items()])
        sid = self._sid_by_kind
        return [
            (seq, sid[r[0], r[1], _KIND_OF_KEY[key]], r[2], value, int(r[4]), r[5])
            for seq, r, (key, value) in zip(count(first), batch, normalised)
        ]

    # -- writing --------------------------------------------------------------------------

    def commit(self, batch: Sequence[Reading], pending_dropped: int) -> _Committed:
        """Write ``batch`` in one transaction, apply the bounds, persist the next sequence
        number and ``pending_dropped`` (readings the Buffer dropped in memory) with it.
        Raises ``sqlite3.Error`` with nothing written."""
        age_due = (
            self._config.max_age is not None
            and time.monotonic() - self._last_age_check >= _AGE_CHECK_INTERVAL
        )
        if not batch and not pending_dropped and not age_due:
            return _Committed(None, None, 0, self._dropped)
        first = self._next_seq
        rows = self._rows(batch, first) if batch else []
        try:
            dropped_now, depth = self._transaction(rows, first, pending_dropped, age_due)
        except (OverflowError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            # A value SQLite cannot bind; rare, so only now pay for per-value normalisation.
            rows = self._slow_rows(batch, first)
            dropped_now, depth = self._transaction(rows, first, pending_dropped, age_due)
        if age_due:
            self._last_age_check = time.monotonic()
        self._next_seq = first + len(rows)
        self._depth = depth
        self._dropped += pending_dropped + dropped_now
        if not rows:
            return _Committed(None, None, dropped_now, self._dropped)
        return _Committed(first, first + len(rows) - 1, dropped_now, self._dropped)

    def _transaction(
        self, rows: list[tuple[Any, ...]], first: int, pending_dropped: int, age_due: bool
    ) -> tuple[int, int]:
        conn = self._db
        depth = self._depth
        dropped = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self._config.max_bytes is not None and rows:
                # Make room first so the insert reuses the freed pages instead of growing
                # the file past the bound.
                n, depth = self._drop_oldest(
                    conn, self._rows_over_bound(conn, len(rows), depth), depth
                )
                dropped += n
            if rows:
                conn.executemany(_INSERT, rows)
                depth += len(rows)
            if self._config.max_bytes is not None and rows:
                # The estimate can be short; settle the remainder exactly (bounded loop).
                for _ in range(8):
                    over = self._rows_over_bound(conn, 0, depth)
                    if not over:
                        break
                    n, depth = self._drop_oldest(conn, over, depth)
                    dropped += n
            if age_due:
                n, depth = self._drop_aged(conn, depth)
                dropped += n
            if rows:
                conn.execute(_SET_META, (first + len(rows), "next_seq"))
            if dropped or pending_dropped:
                conn.execute(_SET_META, (self._dropped + dropped + pending_dropped, "dropped"))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                conn.rollback()
            raise
        return dropped, depth

    def _used_bytes(self, conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _rows_over_bound(self, conn: sqlite3.Connection, incoming: int, depth: int) -> int:
        """How many of the oldest rows to delete so that ``incoming`` more rows fit."""
        limit = self._config.max_bytes
        assert limit is not None
        used = self._used_bytes(conn)
        row_bytes = used / depth if depth > 100 else _DEFAULT_ROW_BYTES
        excess = used + incoming * row_bytes - limit
        if excess <= 0 or depth == 0:
            return 0
        return min(depth, math.ceil(excess / row_bytes))

    def _drop_oldest(self, conn: sqlite3.Connection, n: int, depth: int) -> tuple[int, int]:
        if n <= 0:
            return 0, depth
        row = conn.execute(
            "SELECT seq FROM outbox ORDER BY seq LIMIT 1 OFFSET ?", (n - 1,)
        ).fetchone()
        if row is None:
            deleted = conn.execute("DELETE FROM outbox").rowcount
        else:
            deleted = conn.execute("DELETE FROM outbox WHERE seq <= ?", (row[0],)).rowcount
        return deleted, depth - deleted

    def _drop_aged(self, conn: sqlite3.Connection, depth: int) -> tuple[int, int]:
        assert self._config.max_age is not None
        cutoff = time.time_ns() // 1_000_000 - int(self._config.max_age * 1000)
        # Scans from the oldest row and stops at the first young one: costs what it deletes.
        # A row older than the cutoff but behind a younger one is kept until that one goes.
        row = conn.execute(
            "SELECT seq FROM outbox WHERE ts >= ? ORDER BY seq LIMIT 1", (cutoff,)
        ).fetchone()
        if row is None:
            deleted = conn.execute("DELETE FROM outbox").rowcount
        else:
            deleted = conn.execute("DELETE FROM outbox WHERE seq < ?", (row[0],)).rowcount
        return deleted, depth - deleted

    def ack(self, first: int, last: int) -> int:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE seq BETWEEN ? AND ?", (first, last)
            ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        self._depth -= deleted
        return int(deleted)

    # -- reading --------------------------------------------------------------------------

    def read(self, after: int, max_points: int) -> OutboxBatch | None:
        rows = self._db.execute(_SELECT, (after, max_points)).fetchall()
        if not rows:
            return None
        seqs, sids, ts, values, qualities, reasons = zip(*rows, strict=True)
        series: list[tuple[str, str]] = []
        index: dict[tuple[str, str], int] = {}
        position: dict[int, int] = {}
        decoders: dict[int, Callable[[Any], Value]] = {}
        for sid in dict.fromkeys(sids):  # first-appearance order, deterministic
            device, tag, kind = self._series[sid]
            i = index.get((device, tag))
            if i is None:
                i = index[device, tag] = len(series)
                series.append((device, tag))
            position[sid] = i
            decoder = _DECODERS.get(kind)
            if decoder is not None:
                decoders[sid] = decoder
        val: list[Value] = list(values)
        if decoders:
            val = [
                decoders[sid](v) if sid in decoders else v for sid, v in zip(sids, val, strict=True)
            ]
        why: dict[int, str] = {}
        if reasons.count(None) != len(reasons):
            why = {i: r for i, r in enumerate(reasons) if r is not None}
        return OutboxBatch(
            seqs=list(seqs),
            series=series,
            s=[position[sid] for sid in sids],
            t=list(ts),
            val=val,
            q=list(qualities),
            why=why,
        )

    def status(self) -> _StatusRow:
        row = self._db.execute("SELECT ts FROM outbox ORDER BY seq LIMIT 1").fetchone()
        size = 0
        for name in (self._path, Path(f"{self._path}-wal")):
            with contextlib.suppress(FileNotFoundError):
                size += name.stat().st_size
        return _StatusRow(self._depth, size, row[0] if row else None)

    def execute(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        return fn(self._db)


class Buffer:
    """The durable outbox. Use as ``async with Buffer(config) as buffer:``.

    The scheduler calls :meth:`submit`; the forwarder calls :meth:`wait_for_data`,
    :meth:`read` and :meth:`ack`. All methods must be called from the event loop thread
    that opened the buffer. A Buffer is opened once.

    ``on_overflow(dropped_now)`` is called on the event loop, at most once per writer
    cycle, when readings were dropped by a bound (bytes, age) or because too many were
    pending in memory; exceptions it raises are logged and ignored.
    ``on_error(reason)`` is called on the event loop when the file starts refusing writes
    (``reason`` is SQLite's message) and with ``None`` when it accepts them again.
    """

    def __init__(
        self,
        config: BufferConfig,
        *,
        on_overflow: Callable[[int], None] | None = None,
        on_error: Callable[[str | None], None] | None = None,
    ) -> None:
        self._config = config
        self._on_overflow = on_overflow
        self._on_error = on_error
        self._store = _Store(config)
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._pending: list[Reading] = []
        self._max_pending = config.max_pending
        # Beyond this many pending readings the writer does not wait for flush_interval.
        self._eager = max(1, config.max_pending // 4)
        self._submitted = 0  # readings ever accepted by submit(); flush() targets index it
        self._inflight = False
        self._unpersisted_drops = 0
        self._unreported_drops = 0
        self._drop_log_at = -math.inf
        self._drop_log_count = 0
        self._last_seq: int | None = None
        self._first_seq_this_run: int | None = None
        self._dropped = 0
        self._error: str | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._data = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Open (or create) the file in the worker thread and start the writer task.
        Raises :class:`BufferStorageError` when the file cannot be used."""
        if self._state != "new":
            raise RuntimeError("a Buffer can be opened only once")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fieldgate-buffer")
        try:
            opened = await self._call(self._store.open)
        except BaseException:
            self._executor.shutdown(wait=True)
            self._state = "closed"
            raise
        self._last_seq, self._dropped, _ = opened
        self._state = "open"
        self._task = asyncio.create_task(self._writer(), name="fieldgate-buffer-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Commit what is pending (one attempt), close the file, stop the thread."""
        if self._state != "open":
            return
        self._state = "closing"
        self._urgent.set()
        self._wake.set()
        self._data.set()  # wait_for_data() callers wake up and see the buffer closing
        assert self._task is not None and self._executor is not None
        try:
            await self._task
        finally:
            self._fail_waiters(RuntimeError("the buffer is closed"))
            try:
                await self._call(self._store.close)
            finally:
                self._executor.shutdown(wait=True)
                self._state = "closed"

    # -- producer side --------------------------------------------------------------------

    def submit(self, readings: Sequence[Reading]) -> None:
        """Queue readings for the writer. Never blocks or awaits; the caller may reuse the
        sequence afterwards. Beyond ``max_pending`` queued readings the oldest are dropped
        (counted). Raises ``RuntimeError`` unless the buffer is open."""
        if self._state != "open":
            raise RuntimeError(f"submit() on a {self._state} buffer")
        pending = self._pending
        pending.extend(readings)
        self._submitted += len(readings)
        if len(pending) > self._max_pending:
            self._drop_pending(len(pending) - self._max_pending)
        if len(pending) >= self._eager:
            self._urgent.set()
        self._wake.set()

    async def flush(self) -> None:
        """Commit everything submitted so far, now (cutting ``flush_interval`` short), and
        return when it is on disk or dropped (by a bound, or because a batch broke the
        Reading contract and could not be stored; logged and counted). Raises
        :class:`BufferStorageError` when the file refuses the commit (the readings stay
        pending and are retried), ``RuntimeError`` when the buffer closes first."""
        self._check_open()
        if not self._pending and not self._inflight:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._submitted, future))
        self._urgent.set()
        self._wake.set()
        await future

    # -- consumer side --------------------------------------------------------------------

    async def read(self, after: int, max_points: int) -> OutboxBatch | None:
        """The oldest committed readings with ``seq > after``, in sequence order, at most
        ``max_points`` (1..MAX_BATCH_POINTS); ``None`` when there are none. Rows stay until
        acknowledged, so the forwarder may read ahead with ``after=batch.last``."""
        if not 1 <= max_points <= MAX_BATCH_POINTS:
            raise ValueError(f"max_points must be within 1..{MAX_BATCH_POINTS}, got {max_points}")
        self._check_open()
        try:
            return await self._call(self._store.read, after, max_points)
        except sqlite3.Error as exc:
            raise BufferStorageError(
                f"buffer {self._config.path}: read failed: {exc}", str(exc)
            ) from exc

    async def wait_for_data(self, after: int) -> None:
        """Return once a reading with ``seq > after`` has been committed (at once if one
        has). Woken by the writer, no polling. Raises ``RuntimeError`` when the buffer
        closes while waiting."""
        while self._last_seq is None or self._last_seq <= after:
            self._check_open()
            await self._data.wait()

    async def ack(self, first: int, last: int) -> int:
        """Delete the readings ``first..last`` (inclusive) after the uplink acknowledged
        them; returns how many rows were deleted. Idempotent: acking again, or rows already
        dropped by a bound, deletes nothing. Raises :class:`BufferStorageError` when the file
        refuses the delete (the rows are then sent again later: at-least-once)."""
        self._check_open()
        if last < first:
            return 0
        try:
            deleted = await self._call(self._store.ack, first, last)
        except sqlite3.Error as exc:
            raise BufferStorageError(
                f"buffer {self._config.path}: ack failed: {exc}", str(exc)
            ) from exc
        return deleted

    async def status(self) -> BufferStatus:
        """Depth counts committed readings plus those still pending in memory."""
        self._check_open()
        row = await self._call(self._store.status)
        return BufferStatus(
            depth=row.depth + len(self._pending),
            bytes=row.bytes,
            oldest_ts=row.oldest_ts,
            dropped=self.dropped,
            last_seq=self._last_seq,
            error=self._error,
        )

    @property
    def last_seq(self) -> int | None:
        """The highest sequence number ever committed to this file (``None`` if none)."""
        return self._last_seq

    @property
    def first_seq_this_run(self) -> int | None:
        """The first sequence number committed since this Buffer opened the file."""
        return self._first_seq_this_run

    @property
    def dropped(self) -> int:
        """Readings dropped by the bounds or the pending limit, over the file's lifetime."""
        return self._dropped + self._unpersisted_drops

    @property
    def pending(self) -> int:
        """Readings accepted by submit() and not yet committed."""
        return len(self._pending)

    @property
    def error(self) -> str | None:
        """Why the last commit failed (e.g. ``database or disk is full``); ``None`` once a
        commit succeeds again."""
        return self._error

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the buffer is {self._state}")

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run_in_db(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` in the worker thread (tests and diagnostics only)."""
        self._check_open()
        return await self._call(self._store.execute, fn)

    def _drop_pending(self, n: int) -> None:
        del self._pending[:n]
        self._unpersisted_drops += n
        self._unreported_drops += n

    async def _writer(self) -> None:
        idle_timeout = _AGE_CHECK_INTERVAL if self._config.max_age is not None else None
        while self._state == "open":
            if not self._pending and not self._urgent.is_set():
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(idle_timeout):
                        await self._wake.wait()
            if self._pending and not self._urgent.is_set():
                # Let submissions accumulate into one transaction; flush() cuts this short.
                delay = _RETRY_DELAY if self._error else self._config.flush_interval
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._urgent.wait()
            self._urgent.clear()
            await self._cycle()
        # Closing: one last attempt for what was submitted while the last cycle ran.
        if self._pending or self._unpersisted_drops:
            await self._cycle()
        if self._pending:
            logger.error(
                "buffer closed with %d readings not written to %s: %s",
                len(self._pending),
                self._config.path,
                self._error,
            )

    async def _cycle(self) -> None:
        batch, self._pending = self._pending, []
        upto = self._submitted
        carried = self._unpersisted_drops
        self._inflight = True
        try:
            result = await self._call(self._store.commit, batch, carried)
        except sqlite3.Error as exc:
            self._pending = batch + self._pending if self._pending else batch
            if len(self._pending) > self._max_pending:
                self._drop_pending(len(self._pending) - self._max_pending)
            self._commit_failed(exc)
            self._fail_waiters(
                BufferStorageError(f"buffer {self._config.path}: commit failed: {exc}", str(exc)),
                upto,
            )
            if self._pending:
                self._wake.set()  # retried after _RETRY_DELAY, or at once by flush()
            self._report_drops(0)
            return
        except Exception as exc:
            # Not a storage condition, so retrying cannot help: readings that break the
            # Reading contract must not block every reading behind them.
            self._commit_failed(exc)
            self._unpersisted_drops += len(batch)
            self._unreported_drops += len(batch)
            self._report_drops(0)
            self._resolve_waiters()
            return
        finally:
            self._inflight = False
        self._unpersisted_drops -= carried
        self._dropped = result.dropped_total
        if self._error is not None:
            logger.warning("buffer %s accepts writes again", self._config.path)
            self._error = None
            self._notify_error(None)
        if result.last_seq is not None:
            if self._first_seq_this_run is None:
                self._first_seq_this_run = result.first_seq
            self._last_seq = result.last_seq
            # Wake every wait_for_data() caller; each re-checks its own threshold.
            self._data.set()
            self._data = asyncio.Event()
        self._report_drops(result.dropped_now)
        self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        """Release flush() callers whose readings are now all committed or dropped."""
        done = self._submitted - len(self._pending)
        remaining = []
        for target, future in self._waiters:
            if target <= done:
                if not future.done():
                    future.set_result(None)
            else:
                remaining.append((target, future))
        self._waiters = remaining

    def _commit_failed(self, exc: Exception) -> None:
        """Record the condition; log it once, not on every retry."""
        message = str(exc) or type(exc).__name__
        if message != self._error:
            if isinstance(exc, sqlite3.Error):
                logger.error(
                    "buffer %s refuses writes (%s); keeping %d readings in memory "
                    "(max_pending %d) and retrying",
                    self._config.path,
                    message,
                    len(self._pending),
                    self._max_pending,
                )
            else:
                logger.error(
                    "buffer %s cannot store a batch of readings (%r); dropping it",
                    self._config.path,
                    exc,
                    exc_info=exc,
                )
            self._error = message
            self._notify_error(message)

    def _notify_error(self, reason: str | None) -> None:
        if self._on_error is None:
            return
        try:
            self._on_error(reason)
        except Exception:
            logger.exception("buffer on_error callback failed")

    def _fail_waiters(self, exc: BaseException, upto: int | None = None) -> None:
        remaining = []
        for target, future in self._waiters:
            if upto is None or target <= upto:
                if not future.done():
                    future.set_exception(exc)
            else:
                remaining.append((target, future))
        self._waiters = remaining

    def _report_drops(self, dropped_now: int) -> None:
        total = dropped_now + self._unreported_drops
        self._unreported_drops = 0
        if not total:
            return
        self._drop_log_count += total
        now = time.monotonic()
        if now - self._drop_log_at >= _DROP_LOG_INTERVAL:
            logger.warning(
                "buffer %s dropped %d oldest readings (bounds: max_bytes=%s, max_age=%s, "
                "max_pending=%d); %d dropped in total",
                self._config.path,
                self._drop_log_count,
                self._config.max_bytes,
                self._config.max_age,
                self._max_pending,
                self.dropped,
            )
            self._drop_log_at = now
            self._drop_log_count = 0
        if self._on_overflow is not None:
            try:
                self._on_overflow(total)
            except Exception:
                logger.exception("buffer on_overflow callback failed")


def lock_path_of(path: Path) -> Path:
    """The advisory lock file of the buffer at ``path`` (``<resolved path>.lock``; resolved
    so that two spellings of one file, or a symlink, share the lock)."""
    resolved = Path(path).resolve()
    return resolved.with_name(resolved.name + LOCK_SUFFIX)


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing buffer file, for diagnostics and audits.

    Works whether or not a gateway has the buffer open: each query (or explicit read
    transaction) sees a consistent WAL snapshot, never blocks the writer and never
    modifies the file. The caller closes the connection. Raises
    :class:`BufferStorageError` when there is no file at ``path``, when it is not an
    SQLite database, not a fieldgate buffer, or of another buffer format.
    """
    path = Path(path)
    if not path.exists():
        raise BufferStorageError(f"no buffer file at {path}", "missing")
    if not path.is_file():
        raise BufferStorageError(f"{path} is not a file", "not a file")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=_LOCK_TIMEOUT
        )
    except sqlite3.Error as exc:
        raise BufferStorageError(f"cannot open {path}: {exc}", str(exc)) from exc
    try:
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.DatabaseError as exc:
            if _is_corruption(exc):
                raise BufferStorageError(
                    f"{path} is not a fieldgate buffer (not an SQLite database, or damaged: {exc})",
                    str(exc),
                ) from exc
            raise BufferStorageError(f"cannot read {path}: {exc}", str(exc)) from exc
        if not {"meta", "series", "outbox"} <= tables:
            raise BufferStorageError(
                f"{path} is an SQLite database but not a fieldgate buffer "
                "(no meta/series/outbox tables)",
                "not a buffer",
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is None or row[0] != FORMAT_VERSION:
            raise BufferStorageError(
                f"{path} has buffer format {None if row is None else row[0]!r}, "
                f"this version reads format {FORMAT_VERSION}",
                "format",
            )
    except BaseException:
        conn.close()
        raise
    return conn


def accepted_range(path: Path) -> tuple[int | None, int | None]:
    """The first and last sequence numbers a buffer file has ever handed out, read
    through a read-only connection (works while a gateway has the buffer open: the
    result is then a snapshot of its last commit). ``(None, None)`` when it accepted
    nothing. Used to audit delivery: every number in the range must be in the cloud or
    still in the buffer. Raises :class:`BufferStorageError` like :func:`open_readonly`."""
    conn = open_readonly(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    first, following = int(meta["created_seq"]), int(meta["next_seq"])
    if following <= first:
        return None, None
    return first, following - 1
