"""``fieldgate sim modbus`` as a process: options, and faults switched through ``--control``."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.framer import FramerType

pytestmark = pytest.mark.integration


class Sim:
    """A ``fieldgate sim modbus --control`` child process with line-based stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    async def command(self, line: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        return (await asyncio.wait_for(self.process.stdout.readline(), 10)).decode().strip()


async def start(*args: str) -> Sim:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fieldgate", "sim", "modbus", "--port", "0", "--control", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    banner = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
    match = re.search(r"on 127\.0\.0\.1:(\d+)", banner)
    assert match, banner
    assert (await process.stdout.readline()).startswith(b"control: commands:")
    return Sim(process, int(match.group(1)))


async def stop(sim: Sim) -> None:
    sim.process.terminate()
    await asyncio.wait_for(sim.process.wait(), 10)


async def test_faults_switched_at_run_time_over_stdin() -> None:
    sim = await start("--units", "1,2", "--rtu-tcp", "--exception", "input:0=4")
    client = AsyncModbusTcpClient(
        "127.0.0.1", port=sim.port, framer=FramerType.RTU, timeout=2, retries=0
    )
    try:
        assert await client.connect()
        assert (await client.read_input_registers(0, count=2)).exception_code == 4
        assert await sim.command("exception input:0=0") == "ok no faults"
        assert not (await client.read_input_registers(0, count=2, device_id=2)).isError()
        assert await sim.command("latency 0.3") == "ok latency 0.3s"
        started = time.monotonic()
        assert not (await client.read_holding_registers(0, count=1)).isError()
        assert time.monotonic() - started >= 0.3
        assert (await sim.command("nonsense")).startswith("error: unknown command")
        assert await sim.command("set motor1.setpoint 1234") == "ok latency 0.3s"
        assert (await client.read_holding_registers(0, count=1, device_id=2)).registers == [1234]
        assert await sim.command("drop") == "ok dropped 1 connection(s)"
    finally:
        client.close()
        await stop(sim)


async def test_bad_options_fail_with_a_message(tmp_path: Path) -> None:
    bad_map = tmp_path / "map.csv"
    bad_map.write_text("name,table,address,type\nx,holding,0,uint16\n", encoding="utf-8")
    for args, message in (
        (["--exception", "holding:10"], "expected TABLE:ADDRESS=CODE"),
        (["--map", str(bad_map)], "'x' is not a plant signal"),
        (["--serial", "/nonexistent/tty"], "cannot serve Modbus on /nonexistent/tty"),
    ):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fieldgate", "sim", "modbus", "--port", "0", *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode != 0
        assert message in err.decode(), err.decode()
