"""Config models of the Modbus adapter: good configs, and errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import adapters.modbus
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig, ModbusTagConfig, plugin
from adapters.registry import get
from simulators.modbus import PLANT_TAGS

SAMPLE = Path(adapters.modbus.__file__).with_name("sample.yaml")


def device(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "modbus",
        "name": "plc1",
        "host": "192.0.2.10",
        "tags": [{"name": "speed", "table": "input", "address": 0, "type": "float32"}],
    }
    base.update(overrides)
    return base


def tag(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "t", "table": "holding", "address": 0, "type": "uint16"}
    base.update(overrides)
    return base


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        ModbusDeviceConfig.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_defaults() -> None:
    cfg = ModbusDeviceConfig.model_validate(device())
    assert (cfg.port, cfg.unit, cfg.byte_order, cfg.word_order) == (502, 1, "big", "big")
    assert (cfg.max_registers_per_request, cfg.max_gap, cfg.timeout) == (125, 0, 2.0)
    (t,) = cfg.tags
    assert isinstance(t, ModbusTagConfig)
    assert (t.scale, t.offset, t.registers) == (1.0, 0.0, 2)
    assert cfg.layout(t) == ("big", "big")


def test_the_plugin_is_registered_under_its_type() -> None:
    assert get("modbus") is plugin
    assert plugin.config_model is ModbusDeviceConfig and plugin.factory is ModbusAdapter


@pytest.mark.parametrize(
    ("order", "layout"),
    [
        ("ABCD", ("big", "big")),
        ("CDAB", ("big", "little")),
        ("BADC", ("little", "big")),
        ("DCBA", ("little", "little")),
    ],
)
def test_order_shorthand_at_device_and_tag_level(order: str, layout: tuple[str, str]) -> None:
    cfg = ModbusDeviceConfig.model_validate(device(order=order))
    assert (cfg.byte_order, cfg.word_order) == layout
    assert cfg.layout(cfg.tags[0]) == layout
    cfg = ModbusDeviceConfig.model_validate(device(tags=[tag(order=order)]))
    assert cfg.layout(cfg.tags[0]) == layout


def test_tag_layout_falls_back_per_field_to_the_device() -> None:
    cfg = ModbusDeviceConfig.model_validate(
        device(order="DCBA", tags=[tag(word_order="big"), tag(name="u")])
    )
    assert cfg.layout(cfg.tags[0]) == ("little", "big")
    assert cfg.layout(cfg.tags[1]) == ("little", "little")


def test_order_agreeing_with_byte_and_word_order_is_accepted() -> None:
    cfg = ModbusDeviceConfig.model_validate(device(order="CDAB", word_order="little"))
    assert (cfg.byte_order, cfg.word_order) == ("big", "little")


def test_order_contradicting_byte_order_is_refused() -> None:
    [(loc, msg)] = errors(device(order="CDAB", byte_order="little"))
    assert loc == ""
    assert "order='CDAB' means byte_order='big', word_order='little'" in msg
    assert "contradicts byte_order='little'" in msg
    [(loc, msg)] = errors(device(tags=[tag(order="ABCD", word_order="little")]))
    assert loc == "tags.0"
    assert "contradicts word_order='little'" in msg


def test_address_must_leave_room_for_the_value() -> None:
    assert ModbusDeviceConfig.model_validate(device(tags=[tag(address=65535)]))
    assert ModbusDeviceConfig.model_validate(device(tags=[tag(address=65534, type="int32")]))
    [(loc, msg)] = errors(device(tags=[tag(address=65535, type="float32")]))
    assert loc == "tags.0.address"
    assert "a float32 needs 2 registers, so its address can be at most 65534, got 65535" in msg


@pytest.mark.parametrize(
    ("overrides", "loc", "fragment"),
    [
        ({"address": -1}, "tags.0.address", "greater than or equal to 0"),
        ({"address": 65536}, "tags.0.address", "less than or equal to 65535"),
        ({"type": "float128"}, "tags.0.type", "'float64' or 'string'"),
        ({"table": "coil"}, "tags.0.table", "'input' or 'holding'"),
        ({"scale": 0}, "tags.0.scale", "scale must be a finite number other than 0, got 0"),
        ({"offset": float("nan")}, "tags.0.offset", "offset must be a finite number"),
        ({"order": "ADCB"}, "tags.0.order", "'ABCD', 'CDAB', 'BADC' or 'DCBA'"),
        ({"byte_order": "middle"}, "tags.0.byte_order", "'big' or 'little'"),
        ({"regster": 3}, "tags.0.regster", "Extra inputs are not permitted"),
        ({"name": "bad name"}, "tags.0.name", "String should match pattern"),
    ],
)
def test_bad_tags_name_the_field(overrides: dict[str, Any], loc: str, fragment: str) -> None:
    found = errors(device(tags=[tag(**overrides)]))
    assert any(l == loc and fragment in m for l, m in found), found  # noqa: E741


def test_required_tag_fields() -> None:
    found = errors(device(tags=[{"name": "t"}]))
    assert {loc for loc, _ in found} == {"tags.0.table", "tags.0.type", "tags.0.address"}


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"port": 0}, "port"),
        ({"unit": 256}, "unit"),
        ({"host": ""}, "host"),
        ({"max_registers_per_request": 126}, "max_registers_per_request"),
        ({"max_registers_per_request": 0}, "max_registers_per_request"),
        ({"max_gap": -1}, "max_gap"),
        ({"type": "opcua"}, "type"),
        ({"slave": 1}, "slave"),
    ],
)
def test_bad_device_fields(overrides: dict[str, Any], loc: str) -> None:
    assert loc in {l for l, _ in errors(device(**overrides))}  # noqa: E741


def test_a_value_wider_than_a_request_is_refused() -> None:
    [(loc, msg)] = errors(device(max_registers_per_request=1))
    assert loc == ""
    assert (
        "tags[0] ('speed') is a float32 of 2 registers, more than max_registers_per_request=1"
    ) in msg


def test_duplicate_tag_names_are_refused() -> None:
    [(_, msg)] = errors(device(tags=[tag(), tag(address=1)]))
    assert "tag name 't' is used twice in device 'plc1'" in msg


def test_schema_documents_every_field() -> None:
    schema = ModbusDeviceConfig.model_json_schema()
    tag_schema = schema["$defs"]["ModbusTagConfig"]
    for name in ("table", "type", "address", "byte_order", "word_order", "order", "scale"):
        assert tag_schema["properties"][name].get("description"), name
    for name in ("host", "port", "unit", "order", "max_registers_per_request", "max_gap", "tags"):
        assert schema["properties"][name].get("description"), name
    assert tag_schema["additionalProperties"] is False


def test_sample_config_is_valid_and_mirrors_the_simulator_map() -> None:
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    (entry,) = data["devices"]
    cfg = ModbusDeviceConfig.model_validate(entry)
    by_name = {t.name: t for t in cfg.tags}
    assert set(by_name) == {e.name for e in PLANT_TAGS}
    for e in PLANT_TAGS:
        t = by_name[e.name]
        assert (t.table, t.address, t.type, t.scale, t.unit) == (
            e.table, e.address, e.type, e.scale, e.unit
        ), e.name
        assert cfg.layout(t) == {"ABCD": ("big", "big"), "CDAB": ("big", "little")}[e.order]
