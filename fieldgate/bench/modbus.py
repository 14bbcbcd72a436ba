"""``fieldgate bench modbus --tags N``: request plan and read throughput of the adapter.

Starts the plant simulator in its own process (``fieldgate sim modbus --extra N``), builds
an adapter with N contiguous float32 bench tags (holding ``1000 + 2i``) and polls them back
to back over loopback. Prints the requests per poll cycle next to the minimum for that map
(a float32 never straddles two requests, so a request carries at most
``floor(max_registers_per_request / 2)`` of them) and the tag reads per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from adapters.base import Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from adapters.modbus.planner import MAX_REGISTERS
from simulators.modbus import BENCH_BASE, BENCH_MAX

__all__ = ["minimum_requests", "run_modbus_bench"]

_LISTENING = re.compile(r"(?:listening on|on) 127\.0\.0\.1:(\d+)")
"""The simulator's ready line, e.g. ``modbus simulator ... on 127.0.0.1:5020 (unit 1...)``."""

MEASURE_SECONDS = 5.0
START_TIMEOUT = 20.0


def minimum_requests(tags: int, max_registers: int = MAX_REGISTERS) -> int:
    """The fewest requests that read ``tags`` contiguous float32 values without splitting
    one across requests: ``ceil(tags / floor(max_registers / 2))``."""
    return math.ceil(tags / (max_registers // 2)) if tags else 0


async def _start_simulator(extra: int) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fieldgate", "sim", "modbus", "--host", "127.0.0.1",
        "--port", "0", "--extra", str(extra),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its "listening" line, at once
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("the simulator exited before listening")
                found = _LISTENING.search(line)
                if found:
                    return process, int(found.group(1))
    except BaseException:
        process.kill()
        await process.wait()
        raise


def bench_config(tags: int, port: int) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": "bench", "host": "127.0.0.1", "port": port, "timeout": 10,
        "tags": [
            {"name": f"bench.{i:05d}", "table": "holding", "address": BENCH_BASE + 2 * i,
             "type": "float32"}
            for i in range(tags)
        ],
    })


async def run_modbus_bench(
    tags: int, console: Console, seconds: float = MEASURE_SECONDS
) -> dict[str, Any]:
    """Run the benchmark, print its table and return the figures:
    ``tags, requests_per_poll, minimum_requests, polls, seconds, polls_per_s,
    tag_reads_per_s, requests_per_s, bad_readings``."""
    if not 1 <= tags <= BENCH_MAX:
        raise ValueError(f"tags must be 1..{BENCH_MAX}, got {tags}")
    process, port = await _start_simulator(tags)
    try:
        config = bench_config(tags, port)
        adapter = ModbusAdapter(config)
        group = tuple(config.tags)
        await adapter.connect()
        try:
            requests = len(adapter.plan_for(group))
            await adapter.read(group)  # warm-up
            polls = bad = 0
            start = time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds:
                readings = await adapter.read(group)
                polls += 1
                bad += sum(1 for r in readings if r.quality is not Quality.GOOD)
        finally:
            await adapter.close()
    finally:
        process.terminate()
        with contextlib.suppress(ProcessLookupError):
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
    result = {
        "tags": tags,
        "requests_per_poll": requests,
        "minimum_requests": minimum_requests(tags),
        "polls": polls,
        "seconds": round(elapsed, 3),
        "polls_per_s": round(polls / elapsed, 2),
        "tag_reads_per_s": round(polls * tags / elapsed),
        "requests_per_s": round(polls * requests / elapsed),
        "bad_readings": bad,
    }
    table = Table(title=f"Modbus adapter, {tags} contiguous float32 tags over loopback")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("requests per poll cycle", str(requests))
    table.add_row("minimum (float32 never straddles)", str(result["minimum_requests"]))
    table.add_row("poll cycles per second", f"{result['polls_per_s']:.1f}")
    table.add_row("tag reads per second", f"{result['tag_reads_per_s']:,}")
    table.add_row("requests per second", f"{result['requests_per_s']:,}")
    table.add_row("bad readings", str(bad))
    console.print(table)
    return result
