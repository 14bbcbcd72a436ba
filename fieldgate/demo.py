"""``fieldgate demo``: simulators → gateway → cloud on free ports, with a live table of the
values read back through the cloud API and a one-line delivery summary at the end."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fieldgate.stack import Stack
from gateway.buffer import accepted_range

PROTOCOL_NAMES = {"modbus": "Modbus", "opcua": "OPC-UA", "bacnet": "BACnet"}
SIMULATED = ("modbus",)


async def _latest_table(stack: Stack) -> tuple[Table, int]:
    assert stack.api is not None
    table = Table(title=f"fieldgate demo — latest values in the cloud ({stack.base_url})")
    for column in ("device", "tag", "value", "quality", "sampled (UTC)"):
        table.add_column(column)
    response = await stack.api.get("/api/v1/devices", params={"kind": "field", "limit": 100})
    response.raise_for_status()
    tags = 0
    for device in response.json()["items"]:
        latest = await stack.api.get(f"/api/v1/devices/{device['name']}/latest")
        latest.raise_for_status()
        for point in latest.json()["values"]:
            tags += 1
            value = point["value"]
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            quality = point["quality"] if point["quality"] == "good" else (
                f"{point['quality']}: {point.get('reason') or ''}"
            )
            table.add_row(device["name"], point["tag"], shown, quality, point["ts"][11:23])
    return table, tags


async def run_demo(config: dict[str, Any], duration: float | None, console: Console) -> str:
    """Run the demo with the gateway ``config`` (YAML data); returns the summary line."""
    workdir = Path(tempfile.mkdtemp(prefix="fieldgate-demo-"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Stack(workdir) as stack:
        console.print(f"[dim]working directory {workdir} (logs of every process are there)")
        await stack.start_cloud()
        console.print(f"cloud API on {stack.base_url}, MQTT broker on port {stack.broker_port}")
        ports = {"modbus": await stack.start_modbus_simulator()}
        console.print(f"Modbus simulator on port {ports['modbus']}")
        gateway_config = stack.write_gateway_config(config, ports)
        await stack.start_gateway(gateway_config)
        console.print(f"gateway {stack.gateway_id} started ({gateway_config})")
        tags = 0
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            deadline = None if duration is None else loop.time() + duration
            while not stop.is_set() and (deadline is None or loop.time() < deadline):
                with contextlib.suppress(Exception):
                    table, tags = await _latest_table(stack)
                    live.update(table)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        console.print()
        console.print("stopping the gateway (it delivers its backlog first)…")
        await stack.stop_process("gateway")
        first, last = accepted_range(stack.buffer_path)
        stored = 0
        if first is not None and last is not None:
            assert stack.api is not None
            response = await stack.api.get(
                f"/api/v1/devices/{stack.gateway_id}/delivery",
                params={"from_seq": first, "to_seq": last},
            )
            response.raise_for_status()
            stored = int(response.json()["count"])
        accepted = 0 if first is None or last is None else last - first + 1
        with contextlib.suppress(Exception):
            _, tags = await _latest_table(stack)
    protocols = ", ".join(
        PROTOCOL_NAMES.get(t, t) for t in sorted({d["type"] for d in config.get("devices", [])})
    )
    return f"demo: {stored} points stored from {tags} tags ({protocols}), {accepted - stored} lost"
