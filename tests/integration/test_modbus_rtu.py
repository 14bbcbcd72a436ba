"""Modbus RTU over a real serial line: two pseudo-terminals joined by a byte relay (what
``socat`` does), a pymodbus serial server on one end and the adapter on the other, so the
RTU framing, CRCs and termios settings are the real ones.

The simulator's own RTU server (``ModbusSimulator(framer="rtu", serial_port=...)``) is
being built in parallel; until it lands this uses a pymodbus ``ModbusSerialServer`` with
the same register layout the adapter tests need.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("serial", reason="the Modbus serial transport needs pyserial")

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.base import Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from adapters.modbus.line import lines
from gateway.errors import ConnectError

pytestmark = pytest.mark.integration


class PtyLine:
    """Two pty pairs whose master ends are relayed to each other: a null-modem cable
    between :attr:`device_end` and :attr:`gateway_end` (paths such as /dev/pts/7)."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self.device_end = self.gateway_end = ""
        self._masters: tuple[int, int] = (-1, -1)

    async def __aenter__(self) -> PtyLine:
        m1, s1 = os.openpty()
        m2, s2 = os.openpty()
        self._fds = [m1, s1, m2, s2]
        for fd in (m1, m2, s1, s2):
            tty.setraw(fd)
            os.set_blocking(fd, False)
        self.device_end, self.gateway_end = os.ttyname(s1), os.ttyname(s2)
        self._masters = (m1, m2)
        loop = asyncio.get_running_loop()
        loop.add_reader(m1, self._relay, m1, m2)
        loop.add_reader(m2, self._relay, m2, m1)
        return self

    @staticmethod
    def _relay(src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            os.write(dst, data)

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._masters:
            loop.remove_reader(fd)
        for fd in self._fds:
            os.close(fd)


@pytest.fixture
async def pty_line() -> AsyncIterator[PtyLine]:
    async with PtyLine() as line:
        yield line


def _device(unit: int, action: Any = None) -> SimDevice:
    return SimDevice(
        id=unit,
        action=action,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=20, values=unit * 100, datatype=DataType.REGISTERS)],
            [SimData(0, count=4, values=unit, datatype=DataType.REGISTERS)],
        ),
    )


@pytest.fixture
async def rtu_server(pty_line: PtyLine) -> AsyncIterator[ModbusSerialServer]:
    """Units 1 and 2 answer; unit 3 is hung (its answers are held until teardown)."""
    release = asyncio.Event()

    async def hung(*_: Any) -> None:
        await release.wait()

    server = ModbusSerialServer(
        [_device(1), _device(2), _device(3, hung)], port=pty_line.device_end,
        framer=FramerType.RTU, baudrate=19200, parity="N",
    )
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        release.set()
        await server.shutdown()
        if ModbusBaseServer.active_server is server:
            ModbusBaseServer.active_server = None


def rtu_device(path: str, name: str, unit: int, **extra: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": name, "transport": "rtu", "serial_port": path,
        # Linux ptys accept only 8 data bits without parity (the kernel refuses the rest).
        "baudrate": 19200, "parity": "N", "unit": unit, "timeout": 1.0, **extra,
        "tags": [
            {"name": "h0", "table": "holding", "address": 0, "type": "uint16"},
            {"name": "h1", "table": "holding", "address": 1, "type": "int32"},
            {"name": "i0", "table": "input", "address": 0, "type": "uint16"},
            {"name": "c0", "table": "coils", "address": 0},
        ],
    })


async def test_read_and_write_over_a_serial_line(
    pty_line: PtyLine, rtu_server: ModbusSerialServer
) -> None:
    cfg = rtu_device(pty_line.gateway_end, "drive1", 1)
    adapter = ModbusAdapter(cfg)
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(cfg.tags))
        assert [r.value for r in readings] == [100, (100 << 16) | 100, 1, False]
        assert all(r.quality is Quality.GOOD for r in readings)
        assert await adapter.write(cfg.tags[1], -5) == -5
        assert await adapter.write(cfg.tags[3], True) is True
        readings = await adapter.read(tuple(cfg.tags))
        assert [r.value for r in readings] == [100, -5, 1, True]
    finally:
        await adapter.close()


async def test_devices_on_one_rs485_line_share_it(
    pty_line: PtyLine, rtu_server: ModbusSerialServer
) -> None:
    """Two device entries on one serial port: one client, requests one at a time, each
    answered by its own unit."""
    a = ModbusAdapter(rtu_device(pty_line.gateway_end, "drive1", 1))
    b = ModbusAdapter(rtu_device(pty_line.gateway_end, "drive2", 2, inter_frame_delay="2ms"))
    await a.connect()
    await b.connect()
    try:
        assert len(lines()) == 1
        results = await asyncio.gather(
            *(x.read(tuple(x.config.tags)) for x in (a, b, a, b))
        )
        assert [r[2].value for r in results] == [1, 2, 1, 2]
        assert all(r.quality is Quality.GOOD for batch in results for r in batch)
    finally:
        await a.close()
        await b.close()
    assert not lines()


async def test_line_settings_must_agree(pty_line: PtyLine, rtu_server: ModbusSerialServer) -> None:
    a = ModbusAdapter(rtu_device(pty_line.gateway_end, "drive1", 1))
    b = ModbusAdapter(rtu_device(pty_line.gateway_end, "drive2", 2, baudrate=9600))
    await a.connect()
    try:
        with pytest.raises(ConnectError, match="devices on one line need the same settings"):
            await b.connect()
    finally:
        await a.close()
        await b.close()


async def test_a_silent_unit_on_the_line(pty_line: PtyLine, rtu_server: ModbusSerialServer) -> None:
    """Unit 3 does not answer: the read times out after its bounded retries and raises
    ConnectError (nothing answered), so the runtime reports the device disconnected."""
    cfg = rtu_device(pty_line.gateway_end, "ghost", 3, request_timeout=0.1, retries=1)
    adapter = ModbusAdapter(cfg)
    await adapter.connect()
    try:
        expected = r"unit 3 did not answer within 0\.1s \(2 attempts\)"
        with pytest.raises(ConnectError, match=expected):
            await adapter.read(tuple(cfg.tags))
        assert adapter.requests == 2
    finally:
        await adapter.close()


async def test_missing_serial_port_is_a_connect_error() -> None:
    adapter = ModbusAdapter(rtu_device("/dev/does-not-exist", "x", 1))
    with pytest.raises(ConnectError, match="/dev/does-not-exist"):
        await adapter.connect()
    await adapter.close()
    assert not lines()
