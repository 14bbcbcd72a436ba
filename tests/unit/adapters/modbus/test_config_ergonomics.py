"""Modicon addressing, CSV register maps, transports and the new tag kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from adapters.modbus import ModbusDeviceConfig
from adapters.modbus.config import parse_modicon


def device(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "modbus", "name": "plc1", "host": "192.0.2.10", "tags": []}
    base.update(overrides)
    return base


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        ModbusDeviceConfig.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


@pytest.mark.parametrize(
    ("reference", "table", "expected"),
    [
        ("40001", None, ("holding", 0)),
        (40010, "holding", ("holding", 9)),
        ("400001", None, ("holding", 0)),
        ("465536", None, ("holding", 65535)),
        ("30011", None, ("input", 10)),
        ("00017", None, ("coils", 16)),
        ("10001", "discrete_inputs", ("discrete_inputs", 0)),
        (12, "coils", ("coils", 11)),
    ],
)
def test_modicon_references(reference: Any, table: Any, expected: tuple[str, int]) -> None:
    assert parse_modicon(reference, table) == expected


@pytest.mark.parametrize(
    ("reference", "table", "fragment"),
    [
        ("50001", None, "starts with 5"),
        ("40000", None, "must be 1..9999"),
        ("40001", "input", "in the holding table, but the tag says input"),
        ("12", None, "needs a table"),
        (0, "holding", "1-based"),
        ("4x001", None, "expected a Modicon reference"),
    ],
)
def test_bad_modicon_references(reference: Any, table: Any, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_modicon(reference, table)


def test_modicon_addressing_resolves_tags_and_names_the_bad_one() -> None:
    cfg = ModbusDeviceConfig.model_validate(device(addressing="modicon", tags=[
        {"name": "a", "table": "holding", "address": "40001", "type": "uint16"},
        {"name": "b", "table": "input", "address": 30011, "type": "float32"},
        {"name": "c", "table": "coils", "address": "00003"},
    ]))
    assert [(t.table, t.address) for t in cfg.tags] == [("holding", 0), ("input", 10), ("coils", 2)]
    [(loc, msg)] = errors(device(addressing="modicon", tags=[
        {"name": "a", "table": "holding", "address": "40001", "type": "uint16"},
        {"name": "b", "table": "holding", "address": "30001", "type": "uint16"},
    ]))
    assert loc == "tags.1.address" and "in the input table, but the tag says holding" in msg


def test_zero_based_is_the_default_and_takes_numbers_as_protocol_addresses() -> None:
    cfg = ModbusDeviceConfig.model_validate(device(tags=[
        {"name": "a", "table": "holding", "address": 40001, "type": "uint16"}]))
    assert cfg.tags[0].address == 40001


def test_tags_from_csv(tmp_path: Path) -> None:
    (tmp_path / "map.csv").write_text(
        "name,table,address,type,order,scale,offset,unit,interval,unit_id,enum\n"
        "flow,input,30001,float32,CDAB,,,m3/h,5s,,\n"
        "# a comment row\n"
        "\n"
        "mode,holding,40003,uint16,,,,,,2,0=manual;1=auto\n"
        "temp,input,30005,int16,,0.1,-40,degC,,,\n",
        encoding="utf-8",
    )
    cfg = ModbusDeviceConfig.model_validate(
        device(addressing="modicon", tags_csv="map.csv",
               tags=[{"name": "run", "table": "coils", "address": "00001"}]),
        context={"config_dir": str(tmp_path)},
    )
    by = {t.name: t for t in cfg.tags}
    assert list(by) == ["run", "flow", "mode", "temp"]
    assert (by["flow"].table, by["flow"].address, by["flow"].order, by["flow"].interval) == (
        "input", 0, "CDAB", 5.0)
    assert (by["mode"].unit_id, by["mode"].enum) == (2, {0: "manual", 1: "auto"})
    assert (by["temp"].scale, by["temp"].offset, by["temp"].unit) == (0.1, -40.0, "degC")


def test_csv_errors_name_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text(
        "name,table,address,type\n"
        "ok,holding,0,uint16\n"
        "bad,holding,0,float16\n"
        "far,holding,65535,int32\n"
        ",input,1,uint16\n",
        encoding="utf-8",
    )
    found = errors(device(tags_csv=str(path)))
    assert all(loc == "tags_csv" for loc, _ in found)
    messages = [msg for _, msg in found]
    assert any(m.startswith(f"{path}:3:4: type:") for m in messages)
    assert any(m.startswith(f"{path}:4:3: address: a int32 needs 2 registers") for m in messages)
    assert any(m.startswith(f"{path}:5:1: name: required column is empty") for m in messages)
    path.write_text("name,table,adress\n", encoding="utf-8")
    [(_, msg)] = errors(device(tags_csv=str(path)))[:1]
    assert msg.startswith(f"{path}:1:3: unknown column 'adress'")
    [(_, msg)] = errors(device(tags_csv=str(tmp_path / "none.csv")))
    assert "cannot read the tag file" in msg


def test_csv_duplicates_with_yaml_tags_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "map.csv"
    path.write_text("name,table,address,type\nx,holding,0,uint16\n", encoding="utf-8")
    found = errors(device(tags_csv=str(path), tags=[
        {"name": "x", "table": "holding", "address": 1, "type": "uint16"}]))
    assert "'x' is used twice" in found[0][1]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"transport": "rtu"}, "serial_port: Field required"),
        ({"transport": "rtu", "serial_port": "/dev/ttyUSB0"},
         "host: host does not apply to transport rtu (it uses serial_port)"),
        ({"serial_port": "/dev/ttyUSB0"},
         "serial_port: serial_port does not apply to transport tcp"),
        ({"host": None}, "host: Field required"),
        ({"parity": "X"}, "'N', 'E' or 'O'"),
        ({"inter_frame_delay": -1}, "greater than or equal to 0"),
    ],
)
def test_transport_rules(overrides: dict[str, Any], fragment: str) -> None:
    found = errors(device(**overrides))
    assert any(fragment in f"{loc}: {msg}" for loc, msg in found), found


def test_rtu_defaults_and_inter_frame_delay() -> None:
    cfg = ModbusDeviceConfig.model_validate(device(
        host=None, transport="rtu", serial_port="socket://127.0.0.1:4001", baudrate=9600))
    assert (cfg.parity, cfg.stopbits, cfg.bytesize) == ("E", 1, 8)
    assert cfg.effective_inter_frame_delay == pytest.approx(3.5 * 11 / 9600)
    fast = cfg.model_copy(update={"baudrate": 115200})
    assert fast.effective_inter_frame_delay == pytest.approx(0.00175)
    tcp = ModbusDeviceConfig.model_validate(device(timeout=2, retries=3))
    assert tcp.effective_inter_frame_delay == 0
    assert tcp.effective_request_timeout == 0.5
    assert ModbusDeviceConfig.model_validate(
        device(inter_frame_delay="5ms")).effective_inter_frame_delay == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        ({"table": "coils", "type": "uint16"}, "type must be bool"),
        ({"table": "coils", "order": "CDAB"}, "order do not apply to coils"),
        ({"table": "holding", "type": "bool"}, "needs `bit`"),
        ({"table": "holding", "type": "uint16", "bit": 3}, "`bit` applies only"),
        ({"table": "holding", "type": "string"}, "needs `length`"),
        ({"table": "holding", "type": "uint16", "length": 4}, "applies only to type string"),
        ({"table": "holding", "type": "string", "length": 4, "scale": 2}, "do not apply"),
        ({"table": "holding", "type": "float32", "enum": {0: "a"}}, "not float32"),
        ({"table": "holding", "type": "uint16", "enum": {0: "a", 1: "a"}}, "used for 0 and 1"),
        ({"table": "holding", "type": "uint16", "enum": {-1: "a"}}, "do not fit a uint16"),
        ({"table": "holding", "type": "int16", "enum": {0: "a"}, "scale": 2}, "scale/offset"),
        ({"table": "holding", "type": "string", "length": 251}, "less than or equal to 250"),
        ({"table": "holding", "type": "float64", "address": 65533}, "at most 65532"),
    ],
)
def test_tag_kind_rules(tag: dict[str, Any], fragment: str) -> None:
    data = {"name": "t", "address": 0, **tag}
    found = errors(device(tags=[data]))
    assert any(fragment in msg for _, msg in found), found


def test_bits_default_to_bool_and_width() -> None:
    cfg = ModbusDeviceConfig.model_validate(device(tags=[
        {"name": "c", "table": "coils", "address": 65535},
        {"name": "s", "table": "holding", "address": 10, "type": "string", "length": 7},
        {"name": "d", "table": "input", "address": 0, "type": "float64"},
    ]))
    assert [(t.type, t.registers) for t in cfg.tags] == [("bool", 1), ("string", 4), ("float64", 4)]
