"""Exact storage of wire values in (kind, num, txt)."""

from __future__ import annotations

import math

import pytest

from cloud.store.values import decode_value, encode_value

VALUES = [None, True, False, 0, 1, -1, 2**53, 2**53 + 1, -(2**63), 2**63 - 1, 2**70, 10**400,
          0.0, -0.0, 1.5, -1e308, 5e-324, "", "x", "ünï☃", "1.0"]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip_keeps_value_and_type(value: object) -> None:
    decoded = decode_value(*encode_value(value))  # type: ignore[arg-type]
    assert decoded == value and type(decoded) is type(value)
    if isinstance(value, float):
        assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # type: ignore[arg-type]


def test_numbers_share_the_numeric_column() -> None:
    assert encode_value(True)[1] == 1.0
    assert encode_value(7)[1] == 7.0
    assert encode_value(2**60) == (2, float(2**60), str(2**60))
    assert encode_value("7")[1] is None


def test_rejects_non_scalars() -> None:
    with pytest.raises(TypeError):
        encode_value([1])  # type: ignore[arg-type]
