"""``fieldgate probe modbus`` against the plant simulator."""

from __future__ import annotations

import pytest
from rich.console import Console

from fieldgate.probe import parse_range, print_rows, probe_modbus
from simulators.modbus import ModbusSimulator
from simulators.plant import Plant

pytestmark = pytest.mark.integration


async def test_probe_shows_values_and_exceptions_per_address() -> None:
    plant = Plant(seed=1)
    plant.set_setpoint("motor1.setpoint", 1234)
    async with ModbusSimulator(plant, port=0) as sim:
        rows = await probe_modbus(f"127.0.0.1:{sim.port}", table="holding", first=0, last=3)
        assert [(r.address, r.value, r.error) for r in rows[:1]] == [(0, 1234, None)]
        assert rows[0].raw == (1234,)
        assert all(r.error == "modbus exception 2 (illegal data address)" for r in rows[2:])
        floats = await probe_modbus(
            f"127.0.0.1:{sim.port}", table="input", first=0, last=3, type_name="float32"
        )
        assert [r.address for r in floats] == [0, 2]
        assert all(r.raw is not None and len(r.raw) == 2 for r in floats)
    console = Console(record=True, width=120)
    print_rows(rows, "holding", console)
    text = console.export_text()
    assert "40001" in text and "illegal data address" in text


def test_parse_range() -> None:
    assert parse_range("0-99") == (0, 99)
    assert parse_range("7") == (7, 7)
    with pytest.raises(ValueError, match="range"):
        parse_range("9-1")
