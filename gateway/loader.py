"""Load a gateway YAML file into the config model, reporting every problem with its
path (``devices[0].tags[3].address``) and YAML line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adapters import registry
from gateway.config import GatewayConfigBase, gateway_config_model
from gateway.errors import ConfigError

Loc = tuple[int | str, ...]


def _line_map(
    node: yaml.Node, path: Loc = (), lines: dict[Loc, int] | None = None
) -> dict[Loc, int]:
    """Map every path in the YAML document to the 1-based line where its value starts
    (for mapping keys, the line of the key, which is where a reader looks)."""
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*path, key_node.value)
            lines[key] = key_node.start_mark.line + 1
            _line_map(value_node, key, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _line_map(item, (*path, index), lines)
    return lines


def format_path(loc: Loc) -> str:
    """``("devices", 0, "tags", 3, "address")`` → ``devices[0].tags[3].address``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _data_path(loc: Loc, data: Any) -> Loc:
    """Drop the parts of a pydantic error location that are not in the document: the
    discriminator value pydantic inserts for tagged unions, and validator wrappers."""
    out: list[int | str] = []
    current = data
    for part in loc:
        if isinstance(current, dict):
            if part in current:
                out.append(part)
                current = current[part]
            elif part != current.get("type"):
                out.append(part)  # a missing field: name it
                current = None
            # else: the tag pydantic inserts for a discriminated union; not in the file
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
        else:
            # past the document (e.g. a missing field): keep naming it
            out.append(part)
            current = None
    return tuple(out)


def _nearest_line(path: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _describe(error: Any, data_at: Any) -> str:
    message = str(error["msg"])
    if error["type"] in ("missing", "extra_forbidden"):
        return "required field is missing" if error["type"] == "missing" else (
            "unknown field (not part of the config format)"
        )
    if not isinstance(data_at, dict | list) and data_at is not None:
        message += f", got {data_at!r}"
    return message


def parse_config(
    text: str, source: str = "<config>", config_dir: Path | None = None
) -> GatewayConfigBase:
    """Validate YAML ``text``; raises :class:`ConfigError` listing every problem.
    Relative file names inside the config (e.g. ``tags_csv``) resolve against
    ``config_dir`` (the config file's folder), else the working directory."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            f"{source}: not valid YAML", [("(document)", line, str(exc.problem or exc))]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with gateway, uplink, buffer, devices")
    lines = _line_map(node) if node is not None else {}

    problems: list[tuple[str, int | None, str]] = []
    devices = data.get("devices")
    if isinstance(devices, list):
        for index, device in enumerate(devices):
            if isinstance(device, dict) and "type" in device:
                kind = device["type"]
                if not isinstance(kind, str) or kind not in registry.plugins():
                    known = ", ".join(sorted(registry.plugins())) or "none"
                    where: Loc = ("devices", index, "type")
                    problems.append((
                        format_path(where),
                        _nearest_line(where, lines),
                        f"unknown device type {kind!r} (installed adapters: {known})",
                    ))
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems)

    try:
        context = {"config_dir": str(config_dir)} if config_dir is not None else None
        return gateway_config_model().model_validate(data, context=context)
    except ValidationError as exc:
        for error in exc.errors():
            path = _data_path(tuple(error["loc"]), data)
            at: Any = data
            for part in path:
                try:
                    at = at[part]
                except (KeyError, IndexError, TypeError):
                    at = None
                    break
            problems.append((format_path(path), _nearest_line(path, lines), _describe(error, at)))
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems) from None


def load_config(path: str | Path) -> GatewayConfigBase:
    """Read and validate a gateway config file; raises :class:`ConfigError`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from exc
    return parse_config(text, source=str(file), config_dir=file.parent)
