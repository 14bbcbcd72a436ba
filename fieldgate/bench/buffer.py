"""``fieldgate bench buffer``: the store-and-forward buffer's speed, and a backlog drain.

Two parts:

1. For each durability mode (``normal``, ``full``), on a fresh file with the default
   bounds: **insert** rows/s — one ``submit`` + ``flush`` per poll cycle of 1000 tags
   (one transaction each, as the scheduler produces them) — and **drain** rows/s — what
   the forwarder does per batch: ``read`` 5000 oldest, ``encode`` to the wire payload,
   ``ack``. The median of a few runs is reported.
2. **Backlog drain into a local cloud**: a buffer file is pre-filled with ``backlog``
   readings (default one hour of 1000 tags at 1 s: 3.6 M), then a cloud (embedded broker,
   SQLite store) and a gateway with no devices, pointed at that buffer, run as separate
   processes (:class:`fieldgate.stack.Stack`). Measured from the gateway's start until
   the cloud's delivery count covers the whole range: points/s into the cloud store. The
   gateway side (buffer empty = every batch PUBACKed by the broker) is read from the
   running buffer through a read-only connection.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from adapters.base import Reading, now_ms
from fieldgate.stack import Stack
from gateway.buffer import Buffer, BufferConfig, accepted_range, open_readonly

TAGS = 1000
"""Tags per poll cycle: one insert transaction carries one reading of each."""
DRAIN_BATCH = 5000
"""Points per forwarder batch in the drain measurement (the uplink's default)."""
PREFILL_CHUNK = 100_000
"""Readings per submit+flush while pre-filling (below the default ``max_pending``)."""
POLL_INTERVAL = 0.5
"""Seconds between two delivery-count queries; each one scans an index range of the
cloud store, so polling much faster would slow the ingest it measures."""
GATEWAY_ID = "gw-bench-buffer"

Durability = Literal["normal", "full"]


def _cycle(k: int, start_ms: int, tags: list[str]) -> list[Reading]:
    """Poll cycle ``k``: one reading of every tag, sampled at ``start_ms + k`` seconds."""
    ts = start_ms + k * 1000
    return [Reading("plc1", tag, ts, float(k) + i * 0.001) for i, tag in enumerate(tags)]


def _tags() -> list[str]:
    return [f"bench.{i:05d}" for i in range(TAGS)]


async def measure_mode(workdir: Path, durability: Durability, rows: int) -> tuple[float, float]:
    """Insert rows/s and drain rows/s of one run on a fresh file in ``workdir``."""
    tags = _tags()
    start = now_ms()
    cycles = [_cycle(k, start, tags) for k in range(max(2, rows // TAGS) + 1)]
    path = workdir / f"bench-{durability}.db"
    async with Buffer(BufferConfig(path=path, durability=durability)) as buffer:
        buffer.submit(cycles[0])  # creates the series: a one-off, not measured
        await buffer.flush()
        began = time.perf_counter()
        for cycle in cycles[1:]:
            buffer.submit(cycle)
            await buffer.flush()
        inserted = (len(cycles) - 1) * TAGS
        insert_rate = inserted / (time.perf_counter() - began)

        drained = 0
        after = 0
        began = time.perf_counter()
        while (batch := await buffer.read(after, DRAIN_BATCH)) is not None:
            batch.encode()
            await buffer.ack(batch.first, batch.last)
            drained += len(batch)
            after = batch.last
        drain_rate = drained / (time.perf_counter() - began)
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        name.unlink(missing_ok=True)
    return insert_rate, drain_rate


async def prefill(path: Path, points: int) -> tuple[int, int]:
    """Fill a buffer file with ``points`` readings of ``TAGS`` tags at 1 s (sampled over
    the last ``points / TAGS`` seconds); returns the first and last sequence number."""
    tags = _tags()
    seconds = -(-points // TAGS)
    start = now_ms() - seconds * 1000
    cycles_per_chunk = max(1, PREFILL_CHUNK // TAGS)
    left = points
    async with Buffer(BufferConfig(path=path, durability="normal", max_bytes=None)) as buffer:
        k = 0
        while left > 0:
            chunk: list[Reading] = []
            for _ in range(cycles_per_chunk):
                if left <= 0:
                    break
                cycle = _cycle(k, start, tags)[:left]
                chunk.extend(cycle)
                left -= len(cycle)
                k += 1
            buffer.submit(chunk)
            await buffer.flush()
    first, last = accepted_range(path)
    assert first is not None and last is not None
    return first, last


def _buffer_empty(path: Path) -> bool:
    """Whether the running gateway's buffer holds no reading (a read-only snapshot)."""
    conn = open_readonly(path)
    try:
        return conn.execute("SELECT 1 FROM outbox LIMIT 1").fetchone() is None
    finally:
        conn.close()


async def drain_to_cloud(workdir: Path, points: int, console: Console) -> dict[str, Any]:
    """Pre-fill, start cloud and gateway, and time the drain; see the module docstring."""
    async with Stack(workdir, gateway_id=GATEWAY_ID) as stack:
        began = time.perf_counter()
        first, last = await prefill(stack.buffer_path, points)
        prefill_s = time.perf_counter() - began
        console.print(
            f"[dim]bench buffer: {points:,} readings pre-filled in {prefill_s:.1f} s "
            f"({stack.buffer_path.stat().st_size / 1e6:,.0f} MB); starting cloud and gateway"
        )
        await stack.start_cloud()
        assert stack.api is not None
        config = stack.write_gateway_config(
            {
                "gateway": {"id": GATEWAY_ID, "status_interval": "5s"},
                "buffer": {"durability": "normal"},
                "uplink": {"inflight": 16, "max_batch_points": 10_000},
                "devices": [],
            },
            {},
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        await stack.start_gateway(config, log_level="warning")
        gateway = stack.processes["gateway"]
        deadline = started + max(120.0, points / 2000)
        first_stored_at: float | None = None
        acked_at: float | None = None
        stored = 0
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            now = loop.time()
            if gateway.poll() is not None:
                raise RuntimeError(
                    f"the gateway exited with {gateway.returncode}; see {stack.logs['gateway']}"
                )
            if acked_at is None and await asyncio.to_thread(_buffer_empty, stack.buffer_path):
                acked_at = now
            response = await stack.api.get(
                f"/api/v1/devices/{GATEWAY_ID}/delivery",
                params={"from_seq": first, "to_seq": last},
            )
            response.raise_for_status()
            stored = int(response.json()["count"])
            if stored and first_stored_at is None:
                first_stored_at = now
            if stored >= points:
                done_at = loop.time()
                break
            if now > deadline:
                raise RuntimeError(
                    f"only {stored:,} of {points:,} readings stored after {now - started:.0f} s; "
                    f"see {workdir}"
                )
    assert first_stored_at is not None
    total_s = done_at - started
    return {
        "points": points,
        "prefill_s": prefill_s,
        "drain_s": total_s,
        "points_per_s": points / total_s,
        "first_stored_after_s": first_stored_at - started,
        "gateway_acked_s": None if acked_at is None else acked_at - started,
        "resolution_s": POLL_INTERVAL,
    }


async def run_buffer_bench(
    console: Console,
    *,
    backlog: int = 3_600_000,
    rows: int = 500_000,
    repeat: int = 3,
    modes: tuple[Durability, ...] = ("normal", "full"),
) -> dict[str, Any]:
    """Run both parts, print Rich tables and return the figures::

        {"modes": {"normal": {"insert_rows_per_s", "drain_rows_per_s"}, "full": {...}},
         "backlog": {"points", "prefill_s", "drain_s", "points_per_s", ...}}

    ``rows`` readings per insert/drain run, the median of ``repeat`` runs per mode;
    ``backlog`` readings for the cloud drain (0: skip it). The temporary work directory is
    removed on success. Raises ``RuntimeError`` when the drain does not complete (the
    work directory with the logs is then kept and named)."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    workdir = Path(tempfile.mkdtemp(prefix="fieldgate-bench-buffer-"))
    result: dict[str, Any] = {"rows": rows, "modes": {}}
    for durability in modes:
        runs = [await measure_mode(workdir, durability, rows) for _ in range(repeat)]
        result["modes"][durability] = {
            "insert_rows_per_s": statistics.median(r[0] for r in runs),
            "drain_rows_per_s": statistics.median(r[1] for r in runs),
        }
    table = Table(
        title=f"bench buffer: {TAGS}-tag transactions, {DRAIN_BATCH}-point drain batches, "
        f"median of {repeat} x {rows:,} rows"
    )
    table.add_column("durability")
    table.add_column("insert rows/s", justify="right")
    table.add_column("drain rows/s (read+encode+ack)", justify="right")
    for durability, figures in result["modes"].items():
        table.add_row(
            durability,
            f"{figures['insert_rows_per_s']:,.0f}",
            f"{figures['drain_rows_per_s']:,.0f}",
        )
    console.print(table)
    if "normal" in result["modes"] and "full" in result["modes"]:
        normal, full = result["modes"]["normal"], result["modes"]["full"]
        result["full_insert_cost_percent"] = 100 * (
            1 - full["insert_rows_per_s"] / normal["insert_rows_per_s"]
        )
        console.print(
            f"durability full costs {result['full_insert_cost_percent']:.0f} % of the "
            "insert rate here (fsync per commit; far more on SD cards and eMMC)"
        )
    if backlog > 0:
        drain = await drain_to_cloud(workdir / "stack", backlog, console)
        result["backlog"] = drain
    # Hundreds of MB for the full backlog; kept (and named in the error) only on failure.
    shutil.rmtree(workdir, ignore_errors=True)
    if backlog > 0:
        acked = drain["gateway_acked_s"]
        console.print(
            f"backlog of {backlog:,} points drained into the cloud store in "
            f"{drain['drain_s']:.1f} s: [bold]{drain['points_per_s']:,.0f} points/s[/bold] "
            f"(gateway buffer empty after "
            f"{'n/a' if acked is None else f'{acked:.1f} s'}; ±{POLL_INTERVAL} s)"
        )
    return result
