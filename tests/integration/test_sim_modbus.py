"""The Modbus simulator over real loopback sockets, read with pymodbus's own client (not the
fieldgate adapter): unit ids, coils and discrete inputs, every fault, declarative maps."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusIOException

from simulators.faults import Faults
from simulators.modbus import ModbusSimulator
from simulators.plant import ManualClock, Plant

pytestmark = pytest.mark.integration


@asynccontextmanager
async def client(
    port: int, *, answer_within: float = 2.0, on_connect: Callable[[bool], None] | None = None
) -> AsyncIterator[AsyncModbusTcpClient]:
    c = AsyncModbusTcpClient(
        "127.0.0.1", port=port, timeout=answer_within, retries=0, reconnect_delay=0,
        trace_connect=on_connect,
    )
    assert await c.connect()
    try:
        yield c
    finally:
        c.close()


async def test_several_units_each_with_its_own_map_on_one_plant() -> None:
    plant = Plant()
    async with ModbusSimulator(plant, units=[1, 2, 3]) as sim, client(sim.port) as c:
        assert sim.units == (1, 2, 3)
        for unit in (1, 2, 3):
            rr = await c.read_holding_registers(0, count=2, device_id=unit)
            assert rr.registers == [1450, 900] and rr.dev_id == unit
        assert not (await c.write_register(0, 1200, device_id=2)).isError()
        assert (await c.read_holding_registers(0, count=1, device_id=3)).registers == [1200]
        refused = await c.read_holding_registers(0, count=1, device_id=7)
        assert refused.isError() and refused.exception_code == 4


async def test_units_with_their_own_plants() -> None:
    a, b = Plant(motor1_setpoint=100), Plant(motor1_setpoint=200)
    async with ModbusSimulator(units={1: a, 2: b}) as sim, client(sim.port) as c:
        assert sim.plant is a and sim.plants == {1: a, 2: b}
        assert (await c.read_holding_registers(0, count=1, device_id=2)).registers == [200]
        assert (await c.read_holding_registers(0, count=1, device_id=1)).registers == [100]


async def test_unknown_units_can_be_silent() -> None:
    async with (
        ModbusSimulator(Plant(), unknown_units="silent") as sim,
        client(sim.port, answer_within=0.3) as c,
    ):
        with pytest.raises(ModbusIOException):
            await c.read_holding_registers(0, count=1, device_id=9)


async def test_unit_zero_answers_every_id() -> None:
    async with ModbusSimulator(Plant(), unit=0) as sim, client(sim.port) as c:
        assert (await c.read_holding_registers(0, count=1, device_id=77)).registers == [1450]


async def speed(c: AsyncModbusTcpClient) -> float:
    """motor1.speed, a float32 at input 0."""
    regs = (await c.read_input_registers(0, count=2)).registers
    return float(struct.unpack(">f", struct.pack(">2H", *regs))[0])


async def test_coils_drive_the_plant_and_discrete_inputs_report_it() -> None:
    clock = ManualClock()
    plant = Plant(clock=clock, motor1_setpoint=1500)
    clock.t = 60.0
    async with ModbusSimulator(plant) as sim, client(sim.port) as c:
        assert (await c.read_coils(0, count=2)).bits[:2] == [True, True]
        assert (await c.read_discrete_inputs(0, count=3)).bits[:3] == [True, False, False]
        assert await speed(c) == pytest.approx(1500, rel=0.01)

        assert not (await c.write_coil(0, False)).isError()
        assert not plant.running("motor1.run")
        clock.t += 20.0  # ten time constants
        assert await speed(c) < 1
        assert not (await c.write_coils(0, [False, False])).isError()
        clock.t += 60.0
        assert (await c.read_discrete_inputs(0, count=3)).bits[:3] == [False, False, False]
        assert (await c.read_input_registers(12, count=1)).registers == [0]  # stopped

        plant.set_fault(True)
        assert (await c.read_discrete_inputs(1, count=1)).bits[0] is True
        plant.set_overfill(True)
        clock.t += 120.0
        assert (await c.read_discrete_inputs(2, count=1)).bits[0] is True


async def test_undefined_bits_and_read_only_bits_are_refused() -> None:
    async with ModbusSimulator(Plant()) as sim, client(sim.port) as c:
        assert (await c.read_coils(0, count=3)).exception_code == 2  # only coils 0..1 exist
        assert (await c.read_coils(5, count=1)).exception_code == 2
        assert (await c.read_discrete_inputs(2, count=2)).exception_code == 2
        assert (await c.write_coil(2, True)).exception_code == 2


async def test_latency_is_added_to_every_answer() -> None:
    async with ModbusSimulator(Plant()) as sim, client(sim.port) as c:
        started = time.monotonic()
        await c.read_holding_registers(0, count=2)
        fast = time.monotonic() - started
        sim.faults.latency = 0.3
        started = time.monotonic()
        rr = await c.read_holding_registers(0, count=2)
        slow = time.monotonic() - started
        assert not rr.isError()
        assert slow >= 0.3 > fast


async def test_exception_fault_for_an_address() -> None:
    async with ModbusSimulator(Plant()) as sim, client(sim.port) as c:
        sim.faults.set_exception("input", 6, 6)
        assert (await c.read_input_registers(0, count=13)).exception_code == 6
        assert not (await c.read_input_registers(0, count=6)).isError()
        sim.faults.exceptions[("coils", 1)] = 3
        assert (await c.write_coil(1, False)).exception_code == 3
        sim.faults.clear()
        assert not (await c.read_input_registers(0, count=13)).isError()


async def test_a_silent_unit_times_out_and_others_still_answer() -> None:
    async with (
        ModbusSimulator(Plant(), units=[1, 2]) as sim,
        client(sim.port, answer_within=0.3) as c,
    ):
        sim.faults.silence(2)
        with pytest.raises(ModbusIOException):
            await c.read_holding_registers(0, count=1, device_id=2)
        assert not (await c.read_holding_registers(0, count=1, device_id=1)).isError()
        sim.faults.silence(2, False)
        assert not (await c.read_holding_registers(0, count=1, device_id=2)).isError()


async def test_dropped_connections_are_seen_by_the_client() -> None:
    lost = asyncio.Event()
    events: list[bool] = []

    def on_connect(connected: bool) -> None:
        events.append(connected)
        if not connected:
            lost.set()

    async with ModbusSimulator(Plant()) as sim, client(sim.port, on_connect=on_connect) as c:
        assert not (await c.read_holding_registers(0, count=1)).isError()
        assert sim.connections == 1
        assert sim.faults.drop_connections() == 1
        await asyncio.wait_for(lost.wait(), 5)
        assert not c.connected and sim.connections == 0
        assert await c.connect()  # and the simulator takes it back
        assert not (await c.read_holding_registers(0, count=1)).isError()


async def test_drop_rate_closes_the_connection_instead_of_answering() -> None:
    lost = asyncio.Event()
    async with (
        ModbusSimulator(Plant(), faults=Faults(drop_rate=1.0)) as sim,
        client(sim.port, answer_within=1.0, on_connect=lambda up: None if up else lost.set()) as c,
    ):
        with pytest.raises(ModbusIOException):
            await c.read_holding_registers(0, count=1)
        await asyncio.wait_for(lost.wait(), 5)
        assert sim.requests == 0


async def test_stopping_during_a_delayed_answer_leaves_nothing_running() -> None:
    sim = ModbusSimulator(Plant(), faults=Faults(latency=10))
    reached = asyncio.Event()
    respond = sim._respond

    async def spy(*args: Any) -> Any:
        reached.set()
        return await respond(*args)

    sim._respond = spy  # type: ignore[method-assign]
    await sim.start()
    async with client(sim.port, answer_within=5) as c:
        pending = asyncio.ensure_future(c.read_holding_registers(0, count=1))
        await asyncio.wait_for(reached.wait(), 5)
        await sim.stop()
        with pytest.raises(ModbusIOException):
            await pending


YAML_MAP = """\
tags:
  - {name: motor1.setpoint, table: holding, address: 100, type: float32, order: CDAB}
  - {name: recipe, table: holding, address: 0, type: int32, value: -7}
  - {name: flow, table: input, address: 0, type: uint16, scale: 0.1, value: "ramp:0:100:100"}
  - {name: serial_no, table: input, address: 1, type: uint64, value: 123456789012}
  - {name: alarm, table: discrete_inputs, address: 3, value: 1}
  - {name: motor2.run, table: coils, address: 8}
"""


async def test_map_from_yaml_with_generators_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "device.yaml"
    path.write_text(YAML_MAP, encoding="utf-8")
    clock = ManualClock()
    plant = Plant(clock=clock)
    clock.t = 25.0
    async with (
        ModbusSimulator(plant, register_map=path, units=[1, 2]) as sim,
        client(sim.port) as c,
    ):
        regs = (await c.read_holding_registers(100, count=2)).registers
        assert struct.unpack(">f", struct.pack(">2H", regs[1], regs[0]))[0] == 1450
        assert (await c.read_holding_registers(0, count=2)).registers == [0xFFFF, 0xFFF9]
        assert (await c.read_input_registers(0, count=1)).registers == [250]  # 25 % of 100
        serial = (await c.read_input_registers(1, count=4)).registers
        assert struct.unpack(">Q", struct.pack(">4H", *serial))[0] == 123456789012
        assert (await c.read_discrete_inputs(3, count=1)).bits[0] is True
        assert (await c.read_discrete_inputs(2, count=1)).exception_code == 2
        assert (await c.read_input_registers(6, count=1)).exception_code == 2  # not in the map

        await c.write_registers(0, [0, 42], device_id=2)  # constants are per unit
        assert (await c.read_holding_registers(0, count=2, device_id=2)).registers == [0, 42]
        unit1 = await c.read_holding_registers(0, count=2, device_id=1)
        assert unit1.registers == [0xFFFF, 0xFFF9]
        high = struct.unpack(">2H", struct.pack(">f", 700.0))
        await c.write_registers(100, [high[1], high[0]])
        assert plant.setpoint("motor1.setpoint") == 700
        too_fast = struct.unpack(">2H", struct.pack(">f", 9000.0))
        assert (await c.write_registers(100, [too_fast[1], too_fast[0]])).exception_code == 3
        assert (await c.write_register(1, 5, device_id=1)).isError() is False
        assert (await c.write_coil(8, False)).isError() is False
        assert not plant.running("motor2.run")
        assert (await c.write_register(0, 1, device_id=1)).isError() is False
        assert (await c.read_coils(0, count=1)).exception_code == 2


CSV_MAP = """\
name,table,address,type,order,scale,offset,unit,value,interval
tank.level,input,0,uint16,,0.1,,%,,1s
ambient,input,1,int16,,0.1,-40,degC,const:21.5,
limit,holding,0,uint16,,,,,500,
"""


async def test_map_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "device.csv"
    path.write_text(CSV_MAP, encoding="utf-8")
    clock = ManualClock()
    plant = Plant(clock=clock)
    async with ModbusSimulator(plant, register_map=str(path)) as sim, client(sim.port) as c:
        level, ambient = (await c.read_input_registers(0, count=2)).registers
        assert level == round(plant.sample()["tank.level"] * 10)
        assert ambient == 615  # (21.5 + 40) / 0.1
        assert (await c.read_holding_registers(0, count=1)).registers == [500]
        await c.write_register(0, 650)
        assert (await c.read_holding_registers(0, count=1)).registers == [650]
        assert (await c.read_coils(0, count=1)).exception_code == 2  # no coils in this map


def _kwargs(**kw: Any) -> dict[str, Any]:
    return kw


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (_kwargs(units=[]), "at least one unit id"),
        (_kwargs(units=[300]), "unit ids must be 0..255"),
        (_kwargs(framer="ascii"), "framer must be"),
        (_kwargs(framer="socket", serial_port="/dev/null"), "a serial line speaks RTU"),
        (_kwargs(parity="X"), "serial settings"),
        (_kwargs(unknown_units="loud"), "unknown_units"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModbusSimulator(Plant(), **kwargs)
