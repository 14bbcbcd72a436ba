"""RTU framing: over TCP (serial-to-Ethernet converters) and over a real serial line, a
pseudo-terminal pair joined by :class:`simulators.nullmodem.NullModem`."""

from __future__ import annotations

import asyncio
import os

import pytest
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerType

from simulators.modbus import ModbusSimulator
from simulators.nullmodem import NullModem
from simulators.plant import Plant

pytestmark = pytest.mark.integration


async def test_rtu_over_tcp() -> None:
    async with ModbusSimulator(Plant(), framer="rtu", units=[1, 2]) as sim:
        c = AsyncModbusTcpClient(
            "127.0.0.1", port=sim.port, framer=FramerType.RTU, timeout=2, retries=0
        )
        assert await c.connect()
        try:
            assert (await c.read_holding_registers(0, count=2, device_id=2)).registers == [
                1450, 900
            ]
            assert (await c.read_coils(0, count=2)).bits[:2] == [True, True]
            assert (await c.write_register(1, 777)).registers == [777]
            assert sim.plant.setpoint("motor2.setpoint") == 777
        finally:
            c.close()


async def test_a_plain_tcp_client_gets_no_answer_from_an_rtu_server() -> None:
    async with ModbusSimulator(Plant(), framer="rtu") as sim:
        c = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=0.3, retries=0)
        assert await c.connect()
        try:
            with pytest.raises(ModbusIOException):
                await c.read_holding_registers(0, count=2)
        finally:
            c.close()


async def test_null_modem_carries_bytes_both_ways() -> None:
    async with NullModem() as (a, b):
        fa, fb = os.open(a, os.O_RDWR | os.O_NOCTTY), os.open(b, os.O_RDWR | os.O_NOCTTY)
        loop = asyncio.get_running_loop()
        try:
            for src, dst, data in ((fa, fb, b"\x01\x03\x00"), (fb, fa, bytes(range(256)))):
                os.write(src, data)
                got = b""
                while len(got) < len(data):
                    ready = asyncio.Event()
                    loop.add_reader(dst, ready.set)
                    try:
                        await asyncio.wait_for(ready.wait(), 5)
                    finally:
                        loop.remove_reader(dst)
                    got += os.read(dst, 4096)
                assert got == data
        finally:
            os.close(fa)
            os.close(fb)


# Linux ptys drop PARENB, after which pyserial's reconfiguration fails with EINVAL: parity
# E/O cannot be exercised on a pty (a real port or a USB adapter pair can).
@pytest.mark.parametrize(("parity", "stopbits"), [("N", 1), ("N", 2)])
async def test_rtu_over_a_serial_line(parity: str, stopbits: int) -> None:
    async with NullModem() as (server_port, client_port):
        sim = ModbusSimulator(
            Plant(), serial_port=server_port, units=[1, 5], baudrate=9600, parity=parity,  # type: ignore[arg-type]
            stopbits=stopbits,
        )
        async with sim:
            assert sim.address == server_port and sim.framer == "rtu"
            c = AsyncModbusSerialClient(
                client_port, framer=FramerType.RTU, baudrate=9600, parity=parity,
                stopbits=stopbits, timeout=1, retries=0, reconnect_delay=0,
            )
            assert await c.connect()
            try:
                for unit in (1, 5):
                    rr = await c.read_holding_registers(0, count=2, device_id=unit)
                    assert rr.registers == [1450, 900]
                assert (await c.read_discrete_inputs(0, count=3, device_id=5)).bits[:3] == [
                    True, False, False
                ]
                assert not (await c.write_coil(1, False, device_id=1)).isError()
                assert not sim.plant.running("motor2.run")
                assert (await c.read_input_registers(20, count=1)).exception_code == 2
                sim.faults.silence(5)
                with pytest.raises(ModbusIOException):
                    await c.read_holding_registers(0, count=1, device_id=5)
                # the line is still in step after the silence
                assert not (await c.read_holding_registers(0, count=1, device_id=1)).isError()
                assert sim.faults.drop_connections() == 0  # a serial line is not dropped
            finally:
                c.close()


async def test_a_serial_port_that_cannot_open_is_an_os_error(tmp_path: object) -> None:
    sim = ModbusSimulator(Plant(), serial_port="/nonexistent/tty")
    with pytest.raises(OSError, match="cannot serve Modbus on /nonexistent/tty"):
        await sim.start()
    await sim.stop()
