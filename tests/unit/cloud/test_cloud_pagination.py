"""Opaque cursors."""

from __future__ import annotations

import pytest

from cloud.errors import InvalidParameter
from cloud.pagination import decode_cursor, encode_cursor


def test_round_trip() -> None:
    cursor = encode_cursor(1767225600000, 42)
    assert "=" not in cursor
    assert decode_cursor(cursor, int, int) == (1767225600000, 42)
    assert decode_cursor(encode_cursor("plant1.pump"), str) == ("plant1.pump",)


@pytest.mark.parametrize("cursor", ["%%%", "e30", encode_cursor(1), encode_cursor("a", 1),
                                    encode_cursor(True, 1)])
def test_malformed_cursor_names_the_parameter(cursor: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        decode_cursor(cursor, int, int)
    assert caught.value.status == 422 and caught.value.extra == {"field": "cursor"}
