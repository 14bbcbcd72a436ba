"""``fieldgate bench e2e``: simulator → gateway → broker → cloud store, each its own process.

Measured over a window after a warm-up: points/s the gateway accepted into its buffer
(polled), points/s the cloud committed (stored), latency from sampling to commit in the
cloud (from the cloud's ingest histogram), the gateway's CPU time per 1000 points and its
peak resident memory (VmHWM).
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from fieldgate.stack import Stack
from simulators.modbus import BENCH_BASE

WARMUP_TIMEOUT = 60.0


@dataclass
class Snapshot:
    time: float
    cpu: float
    accepted: int
    """Highest sequence number the gateway accepted, from its last status message."""
    status_ts: float
    """When that status was taken (s)."""
    stored: int
    latency: list[tuple[float, float]]
    """Cumulative histogram buckets (upper bound in seconds, count)."""


def bench_config(tags: int, interval_ms: int) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-bench", "status_interval": "1s"},
        "buffer": {"durability": "normal"},
        "uplink": {"inflight": 16, "max_batch_points": 10_000},
        "devices": [{
            "type": "modbus", "name": "bench", "host": "127.0.0.1", "port": 502,
            "interval": f"{interval_ms}ms", "timeout": "5s",
            "tags": [
                {"name": f"bench.{i:05d}", "table": "holding", "address": BENCH_BASE + 2 * i,
                 "type": "float32"}
                for i in range(tags)
            ],
        }],
    }


def _latency_buckets(text: str) -> list[tuple[float, float]]:
    for family in text_string_to_metric_families(text):
        if family.name == "fieldgate_ingest_latency_seconds":
            return sorted(
                (float(s.labels["le"]), s.value)
                for s in family.samples if s.name.endswith("_bucket")
            )
    return []


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile from cumulative histogram buckets, interpolating inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= target:
            if bound == float("inf"):
                return lower_bound
            span = count - lower_count
            fraction = (target - lower_count) / span if span else 1.0
            return lower_bound + (bound - lower_bound) * fraction
        lower_bound, lower_count = bound, count
    return lower_bound


async def _snapshot(stack: Stack, process: psutil.Process) -> Snapshot:
    assert stack.api is not None
    times = process.cpu_times()
    device = await stack.api.get(f"/api/v1/devices/{stack.gateway_id}")
    device.raise_for_status()
    status = device.json().get("status") or {}
    buffer = status.get("buffer") or {}
    delivery = await stack.api.get(
        f"/api/v1/devices/{stack.gateway_id}/delivery",
        params={"from_seq": 0, "to_seq": 2**62},
    )
    delivery.raise_for_status()
    metrics = await stack.api.get("/metrics")
    metrics.raise_for_status()
    return Snapshot(
        time=asyncio.get_running_loop().time(),
        cpu=times.user + times.system,
        accepted=int(buffer.get("last_seq") or 0),
        status_ts=float(status.get("ts") or 0) / 1000,
        stored=int(delivery.json()["count"]),
        latency=_latency_buckets(metrics.text),
    )


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return psutil.Process(pid).memory_info().rss


async def run_e2e(
    *, tags: int, interval_ms: int, duration: float, console: Console
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fieldgate-bench-"))
    async with Stack(workdir, gateway_id="gw-bench") as stack:
        await stack.start_cloud()
        port = await stack.start_modbus_simulator(extra=tags)
        config_path = stack.write_gateway_config(bench_config(tags, interval_ms), {"modbus": port})
        pid = await stack.start_gateway(config_path, log_level="warning")
        process = psutil.Process(pid)
        console.print(f"[dim]bench: {tags} tags every {interval_ms} ms; workdir {workdir}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WARMUP_TIMEOUT
        first = await _snapshot(stack, process)
        while (first.stored < tags or first.accepted == 0) and loop.time() < deadline:
            await asyncio.sleep(0.5)
            first = await _snapshot(stack, process)
        if first.stored == 0:
            raise RuntimeError(f"nothing reached the cloud during warm-up; see {workdir}")
        await asyncio.sleep(duration)
        second = await _snapshot(stack, process)
        peak_rss = _peak_rss(pid)

    elapsed = second.time - first.time
    polled = second.accepted - first.accepted
    polled_elapsed = second.status_ts - first.status_ts
    stored = second.stored - first.stored
    window = [
        (bound, count - dict(first.latency).get(bound, 0.0)) for bound, count in second.latency
    ]
    p50, p99 = quantile(window, 0.50), quantile(window, 0.99)
    cpu = second.cpu - first.cpu
    result = {
        "tags": tags,
        "interval_ms": interval_ms,
        "offered_points_per_s": tags * 1000 / interval_ms,
        "polled_points_per_s": polled / polled_elapsed if polled_elapsed > 0 else None,
        "stored_points_per_s": stored / elapsed,
        "latency_p50_ms": None if p50 is None else p50 * 1000,
        "latency_p99_ms": None if p99 is None else p99 * 1000,
        "gateway_cpu_s_per_1000_points": cpu / polled * 1000 if polled > 0 else None,
        "gateway_cpu_percent": cpu / elapsed * 100,
        "gateway_peak_rss_mb": peak_rss / 1e6,
    }
    table = Table(title=f"bench e2e: {tags} tags x {interval_ms} ms, {elapsed:.0f} s measured")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, "n/a" if value is None else f"{value:,.3f}".rstrip("0").rstrip("."))
    console.print(table)
    return result
