"""The simulator's ``counter:START`` value source: one more on every request that reads it.

The store-and-forward tests rely on it to see lost and duplicated readings in the data
itself, so its contract is checked here on its own: parsing, the count per read request,
and that requests not touching it leave it alone.
"""

from __future__ import annotations

import pytest
from pymodbus.client import AsyncModbusTcpClient

from simulators.modbus import PLANT_MAP, ModbusSimulator
from simulators.modbus_map import Generator, MapEntry, Source
from simulators.plant import Plant

pytestmark = [pytest.mark.integration]


def test_counter_spec_parses_and_prints() -> None:
    source = Source.parse("counter:7", "reads")
    assert (source.kind, source.args, str(source)) == ("counter", (7.0,), "counter:7")
    assert not source.writable


@pytest.mark.parametrize(
    ("spec", "message"),
    [("counter:", "neither a number"), ("counter:1:2", "expected counter:V"),
     ("counter:1.5", "whole number"), ("counter:x", "could not convert")],
)
def test_bad_counter_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Source.parse(spec, "reads")


def test_each_evaluation_counts_once_per_entry() -> None:
    generator = Generator(Plant())
    a = MapEntry("a", "input", 20, "uint32", source="counter:1")
    b = MapEntry("b", "input", 22, "uint32", source="counter:100")
    values = [generator.value(a, {}, {}) for _ in range(3)] + [generator.value(b, {}, {})]
    assert values == [1, 2, 3, 100]


async def test_counter_register_counts_read_requests() -> None:
    counter = MapEntry("sim.reads", "input", 13, "uint32", source="counter:1")
    async with ModbusSimulator(Plant(seed=3), register_map=[*PLANT_MAP, counter]) as sim:
        client = AsyncModbusTcpClient("127.0.0.1", port=sim.port, timeout=2, retries=0)
        assert await client.connect()
        try:
            seen = []
            for _ in range(5):
                reply = await client.read_input_registers(13, count=2, device_id=1)
                assert not reply.isError(), reply
                seen.append(reply.registers[0] << 16 | reply.registers[1])
                # A request that does not cover the counter must not advance it.
                other = await client.read_input_registers(0, count=12, device_id=1)
                assert not other.isError(), other
            # One request covering the counter and its neighbours counts once.
            wide = await client.read_input_registers(10, count=5, device_id=1)
            assert not wide.isError(), wide
            seen.append(wide.registers[3] << 16 | wide.registers[4])
        finally:
            client.close()
    assert seen == [1, 2, 3, 4, 5, 6]
