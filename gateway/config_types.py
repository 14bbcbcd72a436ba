"""Reusable pydantic field types for configuration: durations, byte sizes, names.

Integrators write ``interval: 500ms`` or ``max_bytes: 2GB``; the runtime only ever
sees floats (seconds) and ints (bytes).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|tb|kib|mib|gib|tib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}


def parse_duration(value: Any) -> Any:
    """Turn ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"7d"`` or seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 500ms, 5s, 2m, 1h or 7d")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(f"expected a duration such as 500ms, 5s, 2m, 1h or 7d, got {value!r}")


def parse_size(value: Any) -> Any:
    """Turn ``"64MB"``, ``"1GiB"`` or a number of bytes into an int number of bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512KB, 64MB or 2GiB")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            unit = match.group(2).lower() if match.group(2) else None
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"expected a size such as 512KB, 64MB or 2GiB, got {value!r}")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _DURATION.pattern},
            ],
            "description": "Seconds, or a number with a unit: ms, s, m, h, d",
        }
    ),
]
"""A positive duration in seconds."""

ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    Field(gt=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "exclusiveMinimum": 0},
                {"type": "string", "pattern": _SIZE.pattern},
            ],
            "description": "Bytes, or a number with a unit: KB, MB, GB, KiB, MiB, GiB",
        }
    ),
]
"""A positive size in bytes."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
"""A gateway or device name: letters, digits, ``_`` and ``-``; no dots (the cloud joins
gateway and field-device names with a dot)."""

TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$"
TagName = Annotated[str, Field(pattern=TAG_PATTERN)]
"""A tag name such as ``motor1.speed``."""
