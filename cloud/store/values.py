"""Exact storage of wire values: ``(kind, num, txt)`` columns for any JSON scalar.

``num`` holds bools, ints and floats as a double (so numeric queries work on one column);
an int beyond ±2**53 also keeps its exact decimal text in ``txt`` (as does -0.0, whose sign
SQLite drops); strings live in ``txt``.
"""

from __future__ import annotations

import math

from cloud.contract import WireValue
from cloud.store.models import ValueKind

_EXACT_INT = 2**53

NULL, BOOL, INT, FLOAT, STR = (int(k) for k in ValueKind)


def encode_value(value: WireValue) -> tuple[int, float | None, str | None]:
    """``value`` → ``(kind, num, txt)``; inverse of :func:`decode_value`."""
    # bool first: bool is a subclass of int.
    if value is None:
        return NULL, None, None
    if value is True or value is False:
        return BOOL, 1.0 if value else 0.0, None
    if isinstance(value, int):
        if -_EXACT_INT <= value <= _EXACT_INT:
            return INT, float(value), None
        try:
            return INT, float(value), str(value)
        except OverflowError:  # beyond a double's range: text only
            return INT, None, str(value)
    if isinstance(value, float):
        # SQLite stores an integral REAL as an integer and loses the sign of -0.0.
        if value == 0.0 and math.copysign(1.0, value) < 0:
            return FLOAT, value, "-0.0"
        return FLOAT, value, None
    if isinstance(value, str):
        return STR, None, value
    raise TypeError(f"not a wire value: {type(value).__name__}")


def decode_value(kind: int, num: float | None, txt: str | None) -> WireValue:
    """``(kind, num, txt)`` → the value exactly as it was ingested."""
    if kind == INT:
        return int(txt) if txt is not None else int(num or 0)
    if kind == FLOAT:
        return float(txt) if txt is not None else (float(num) if num is not None else None)
    if kind == BOOL:
        return bool(num)
    if kind == STR:
        return txt
    return None
