"""Declarative register maps: entries, encoding, value sources and YAML/CSV files."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from simulators.modbus import PLANT_BITS, PLANT_MAP
from simulators.modbus_map import (
    Generator,
    MapEntry,
    MapError,
    Source,
    decode,
    encode,
    load_map,
)
from simulators.plant import Plant


@pytest.mark.parametrize(
    ("order", "expected"),
    [("ABCD", [0x0102, 0x0304]), ("CDAB", [0x0304, 0x0102]),
     ("BADC", [0x0201, 0x0403]), ("DCBA", [0x0403, 0x0201])],
)
def test_orders_lay_out_bytes_as_named(order: str, expected: list[int]) -> None:
    entry = MapEntry("x", "holding", 0, "uint32", order=order, source="0")  # type: ignore[arg-type]
    assert list(encode(entry, 0x01020304)) == expected
    assert decode(entry, expected) == 0x01020304


@pytest.mark.parametrize("type_name", ["int16", "uint16", "int32", "uint32", "int64", "uint64",
                                       "float32", "float64"])
@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
def test_every_type_round_trips(type_name: str, order: str) -> None:
    entry = MapEntry("x", "input", 0, type_name, order=order, source="0")  # type: ignore[arg-type]
    for value in (0, 1, 100, -5 if type_name[0] in "if" else 7):
        regs = encode(entry, value)
        assert len(regs) == entry.registers
        assert decode(entry, regs) == value


def test_scale_offset_and_saturation() -> None:
    entry = MapEntry("t", "input", 0, "int16", scale=0.1, offset=-40.0, source="0")
    assert encode(entry, 20.0) == (600,)
    assert decode(entry, (600,)) == pytest.approx(20.0)
    assert encode(entry, 1e9) == (0x7FFF,)  # saturates like a PLC
    assert encode(entry, -1e9) == (0x8000,)
    f64 = MapEntry("f", "input", 0, "float64", source="0")
    assert decode(f64, encode(f64, math.pi)) == math.pi
    assert struct.pack(">4H", *encode(f64, 1.5)) == struct.pack(">d", 1.5)


def test_entries_are_validated() -> None:
    with pytest.raises(ValueError, match="type: float32 does not fit table coils"):
        MapEntry("x", "coils", 0, "float32", source="0")
    with pytest.raises(ValueError, match="does not fit table holding"):
        MapEntry("x", "holding", 0, "bool", source="0")
    with pytest.raises(ValueError, match="address: 65535 does not fit"):
        MapEntry("x", "holding", 65535, "float32", source="0")
    with pytest.raises(ValueError, match="is not a plant signal"):
        MapEntry("nope", "input", 0, "uint16")
    with pytest.raises(ValueError, match="the input table is read-only"):
        MapEntry("x", "input", 0, "uint16", writable=True, source="0")
    with pytest.raises(ValueError, match="cannot take writes"):
        MapEntry("tank.level", "holding", 0, "uint16", writable=True)
    with pytest.raises(ValueError, match="period must be > 0"):
        MapEntry("x", "input", 0, "uint16", source="ramp:0:1:0")
    with pytest.raises(ValueError, match="scale must be a non-zero"):
        MapEntry("x", "input", 0, "uint16", scale=0, source="0")


def test_default_map_is_valid_and_backed_by_the_plant() -> None:
    for entry in (*PLANT_MAP, *PLANT_BITS):
        assert entry.value_source == Source("plant", signal=entry.name)
    assert [e.name for e in PLANT_BITS if e.writable] == ["motor1.run", "motor2.run"]


def test_sources_generate_values() -> None:
    t = [0.0]
    plant = Plant(seed=1, clock=lambda: t[0])
    gen = Generator(plant)

    def value(spec: str, type_name: str = "float32") -> float:
        entry = MapEntry("x", "input", 0, type_name, source=spec)  # type: ignore[arg-type]
        return gen.value(entry, plant.sample(), {})

    t[0] = 2.5
    assert value("42") == 42 and value("const:-1.5") == -1.5
    assert value("ramp:0:100:10") == pytest.approx(25)
    assert value("sine:0:10:10") == pytest.approx(10.0)  # quarter period: the top
    assert value("plant:motor1.setpoint") == 1450
    randoms = {value("random:5:6") for _ in range(5)}
    assert len(randoms) == 5 and all(5 <= v <= 6 for v in randoms)
    entry = MapEntry("c", "holding", 0, "uint16", writable=True, source="7")
    assert gen.value(entry, {}, {"c": 9.0}) == 9.0  # what was written wins
    assert str(Source.parse("ramp:0:1:10", "x")) == "ramp:0:1:10"


YAML_MAP = """\
tags:
  - {name: motor1.speed, table: input, address: 0, type: float32, unit: rpm}
  - {name: flow, table: input, address: 2, type: uint16, scale: 0.1, value: "ramp:0:100:60"}
  - {name: recipe, table: holding, address: 0, type: int32, order: CDAB, value: 12}
  - {name: alarm, table: discrete, address: 5, value: "1", interval: 5s}
  - {name: motor1.run, table: coils, address: 0}
"""

CSV_MAP = """\
# a comment line
name,table,address,type,byte_order,word_order,scale,offset,unit,value,writable,interval
motor2.speed,input,10,float32,little,little,,,rpm,,,1s
temp,input,12,int16,,,0.1,-40,degC,sine:20:30:120,,
limit,holding,3,uint16,,,,,,500,true,
door,discrete_inputs,0,,,,,,,0,,
"""


def test_load_yaml(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    path.write_text(YAML_MAP, encoding="utf-8")
    entries = {e.name: e for e in load_map(path)}
    assert list(entries) == ["motor1.speed", "flow", "recipe", "alarm", "motor1.run"]
    assert entries["flow"].scale == 0.1 and entries["flow"].value_source.kind == "ramp"
    assert entries["recipe"].order == "CDAB" and entries["recipe"].writable  # constants take writes
    assert entries["alarm"].table == "discrete_inputs" and entries["alarm"].type == "bool"
    assert not entries["alarm"].writable
    assert entries["motor1.run"].writable and entries["motor1.run"].value_source.kind == "plant"
    assert not entries["motor1.speed"].writable


def test_load_csv(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text(CSV_MAP, encoding="utf-8")
    entries = {e.name: e for e in load_map(path)}
    assert entries["motor2.speed"].order == "DCBA" and entries["motor2.speed"].unit == "rpm"
    assert entries["temp"].offset == -40 and entries["temp"].scale == 0.1
    assert entries["limit"].writable and entries["limit"].value_source.args == (500.0,)
    assert entries["door"].type == "bool"


@pytest.mark.parametrize(
    ("suffix", "text", "message"),
    [
        (".csv", "name,table,address,type,colour\n", r"unknown column\(s\) 'colour'"),
        (".csv", "name,table,address,type\nx,holding,abc,uint16\n",
         r"map\.csv:2: address: expected an integer"),
        (".csv", "name,table,address,type\nx,holding,0,uint16,9\n", "5 cells but the header has 4"),
        (".csv", "", "empty; expected a header row"),
        (".yaml", "- {name: x, table: holding, address: 0, type: uint16, value: 1}\n"
                  "- {name: y, table: holding, address: 0, type: uint16, value: 1}\n",
         r"tags\[1\]: 'y' at holding 0 overlaps 'x'"),
        (".yaml", "- {name: x, table: input, address: 0, type: float32, value: 1}\n"
                  "- {name: x, table: input, address: 4, type: uint16, value: 1}\n",
         "name 'x' is already used"),
        (".yaml", "- {name: x, table: tape, address: 0, type: uint16}\n", "unknown table 'tape'"),
        (".yaml", "- {name: x, table: input, address: 0}\n", "type: required"),
        (".yaml", "- {name: x, table: input, address: 0, type: uint16, color: red}\n",
         "unknown field"),
        (".yaml", "devices: []\n", "expected a list of tags"),
        (".txt", "", "unknown map format"),
    ],
)
def test_bad_maps_name_the_place(tmp_path: Path, suffix: str, text: str, message: str) -> None:
    path = tmp_path / f"map{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MapError, match=message):
        load_map(path)


def test_entries_of_different_units_may_share_addresses(tmp_path: Path) -> None:
    path = tmp_path / "units.yaml"
    path.write_text(
        "- {name: a, table: holding, address: 0, type: uint16, value: 1, unit_id: 1}\n"
        "- {name: b, table: holding, address: 0, type: uint16, value: 2, unit_id: 2}\n",
        encoding="utf-8",
    )
    assert [e.unit_id for e in load_map(path)] == [1, 2]
