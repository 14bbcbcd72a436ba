"""Modbus RTU over a real serial line: two pseudo-terminals joined like a null-modem
cable (``simulators.nullmodem``), the simulator's RTU server on one end and the adapter on
the other, so the RTU framing, CRCs and termios settings are the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("serial", reason="the Modbus serial transport needs pyserial")

from adapters.base import Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from adapters.modbus.line import lines
from gateway.errors import ConnectError
from simulators.faults import Faults
from simulators.modbus import ModbusSimulator
from simulators.nullmodem import NullModem
from simulators.plant import Plant

pytestmark = pytest.mark.integration


@pytest.fixture
async def pty_line() -> AsyncIterator[tuple[str, str]]:
    """(device end, gateway end) of a null-modem pair of ptys."""
    async with NullModem() as ports:
        yield ports


@pytest.fixture
async def rtu_server(pty_line: tuple[str, str]) -> AsyncIterator[ModbusSimulator]:
    """Units 1 and 2 answer (setpoint 100 and 200 rpm); unit 3 is silent."""
    plants = {
        1: Plant(seed=1, motor1_setpoint=100),
        2: Plant(seed=2, motor1_setpoint=200),
        3: Plant(seed=3),
    }
    async with ModbusSimulator(
        units=plants, serial_port=pty_line[0], baudrate=19200, faults=Faults(silent_units={3})
    ) as sim:
        yield sim


def rtu_device(path: str, name: str, unit: int, **extra: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": name, "transport": "rtu", "serial_port": path,
        # Linux ptys accept only 8 data bits without parity (the kernel refuses the rest).
        "baudrate": 19200, "parity": "N", "unit": unit, "timeout": 1.0, **extra,
        "tags": [
            {"name": "motor1.setpoint", "table": "holding", "address": 0, "type": "uint16"},
            {"name": "motor2.setpoint", "table": "holding", "address": 1, "type": "uint16"},
            {"name": "line.state", "table": "input", "address": 12, "type": "uint16"},
            {"name": "motor1.run", "table": "coils", "address": 0},
        ],
    })


async def test_read_and_write_over_a_serial_line(
    pty_line: tuple[str, str], rtu_server: ModbusSimulator
) -> None:
    cfg = rtu_device(pty_line[1], "drive1", 1)
    adapter = ModbusAdapter(cfg)
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(cfg.tags))
        assert [r.value for r in readings] == [100, 900, 1, True]
        assert all(r.quality is Quality.GOOD for r in readings)
        assert await adapter.write(cfg.tags[1], 1234) == 1234
        assert await adapter.write(cfg.tags[3], False) is False
        readings = await adapter.read(tuple(cfg.tags))
        assert [readings[i].value for i in (0, 1, 3)] == [100, 1234, False]
        plant = rtu_server.plants[1]
        assert plant.setpoint("motor2.setpoint") == 1234
        assert plant.running("motor1.run") is False
    finally:
        await adapter.close()


async def test_devices_on_one_rs485_line_share_it(
    pty_line: tuple[str, str], rtu_server: ModbusSimulator
) -> None:
    """Two device entries on one serial port: one client, requests one at a time, each
    answered by its own unit."""
    a = ModbusAdapter(rtu_device(pty_line[1], "drive1", 1))
    b = ModbusAdapter(rtu_device(pty_line[1], "drive2", 2, inter_frame_delay="2ms"))
    await a.connect()
    await b.connect()
    try:
        assert len(lines()) == 1
        results = await asyncio.gather(
            *(x.read(tuple(x.config.tags)) for x in (a, b, a, b))
        )
        assert [r[0].value for r in results] == [100, 200, 100, 200]
        assert all(r.quality is Quality.GOOD for batch in results for r in batch)
    finally:
        await a.close()
        await b.close()
    assert not lines()


async def test_line_settings_must_agree(
    pty_line: tuple[str, str], rtu_server: ModbusSimulator
) -> None:
    a = ModbusAdapter(rtu_device(pty_line[1], "drive1", 1))
    b = ModbusAdapter(rtu_device(pty_line[1], "drive2", 2, baudrate=9600))
    await a.connect()
    try:
        with pytest.raises(ConnectError, match="devices on one line need the same settings"):
            await b.connect()
    finally:
        await a.close()
        await b.close()


async def test_a_silent_unit_on_the_line(
    pty_line: tuple[str, str], rtu_server: ModbusSimulator
) -> None:
    """Unit 3 does not answer: the read times out after its bounded retries and raises
    ConnectError (nothing answered), so the runtime reports the device disconnected."""
    cfg = rtu_device(pty_line[1], "ghost", 3, request_timeout=0.1, retries=1)
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
