"""Config loading: valid files load, every problem is named with its path and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import json_schema
from gateway.errors import ConfigError
from gateway.loader import format_path, load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]

GOOD = """\
gateway:
  id: gw-1
uplink:
  url: mqtt://127.0.0.1:1883
buffer:
  path: data/buffer.db
  durability: full
devices:
  - name: plc1
    type: modbus
    host: 127.0.0.1
    port: 5020
    interval: 500ms
    tags:
      - {name: motor1.speed, table: holding, address: 0, type: float32}
      - {name: tank.level, table: input, address: 10, type: uint16, scale: 0.1, interval: 2s}
"""


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml")
    return info.value.problems


def test_good_config_loads_with_units_converted() -> None:
    config = parse_config(GOOD)
    assert config.gateway.id == "gw-1"
    assert config.buffer.durability == "full"
    device = config.devices[0]
    assert device.type == "modbus"
    assert device.interval == 0.5
    assert device.tags[1].interval == 2.0
    assert len(config.digest()) == 16


def test_wrong_type_is_reported_with_path_and_line() -> None:
    text = GOOD.replace("address: 10", "address: ten")
    [(path, line, message)] = problems(text)
    assert path == "devices[0].tags[1].address"
    assert line == 16
    assert "integer" in message and "'ten'" in message


def test_every_problem_is_listed() -> None:
    text = GOOD.replace("durability: full", "durability: sometimes").replace(
        "    port: 5020\n", "    port: 5020\n    colour: red\n"
    )
    found = {path: (line, message) for path, line, message in problems(text)}
    assert found["buffer.durability"][0] == 7
    assert "'normal' or 'full'" in found["buffer.durability"][1]
    assert found["devices[0].colour"] == (13, "unknown field (not part of the config format)")


def test_missing_field_names_the_field() -> None:
    text = GOOD.replace("    host: 127.0.0.1\n", "")
    [(path, line, message)] = problems(text)
    assert path == "devices[0].host"
    assert line == 9  # the device entry that lacks it
    assert message == "required field is missing"


def test_unknown_adapter_type_lists_the_installed_ones() -> None:
    [(path, line, message)] = problems(GOOD.replace("type: modbus", "type: profinet"))
    assert (path, line) == ("devices[0].type", 10)
    assert "profinet" in message and "modbus" in message


def test_duplicate_names_are_refused() -> None:
    text = GOOD.replace("name: tank.level", "name: motor1.speed")
    [(path, _, message)] = problems(text)
    assert path == "devices[0]"
    assert "motor1.speed" in message and "twice" in message


def test_yaml_syntax_error_has_a_line() -> None:
    [(_, line, _)] = problems(GOOD.replace("  id: gw-1", "  id: [gw-1"))
    assert line is not None and line >= 2


def test_bad_durations_and_names() -> None:
    found = {p: m for p, _, m in problems(
        GOOD.replace("interval: 500ms", "interval: soon").replace("id: gw-1", "id: gw.1")
    )}
    assert "duration" in found["devices[0].interval"]
    assert "pattern" in found["gateway.id"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_format_path() -> None:
    assert format_path(("devices", 0, "tags", 3, "address")) == "devices[0].tags[3].address"
    assert format_path(()) == "(top level)"


@pytest.mark.parametrize("name", ["demo.yaml"])
def test_example_configs_are_valid(name: str) -> None:
    load_config(ROOT / "config" / name)


def test_committed_schema_is_current() -> None:
    committed = json.loads((ROOT / "config" / "gateway.schema.json").read_text())
    assert committed == json_schema(), (
        "config/gateway.schema.json is stale: run `make schema` and commit it"
    )
