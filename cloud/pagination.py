"""Opaque keyset cursors: base64url of a small JSON array. Clients must not parse them."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from cloud.errors import InvalidParameter


def encode_cursor(*position: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> tuple[Any, ...]:
    """The position in ``cursor``, checked against ``types``; raises
    :class:`InvalidParameter` (422) naming the ``cursor`` parameter."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParameter("malformed cursor: pass the 'next' value of the previous page",
                               field="cursor") from exc
    if (
        not isinstance(position, list)
        or len(position) != len(types)
        or not all(
            isinstance(v, t) and not isinstance(v, bool)
            for v, t in zip(position, types, strict=True)
        )
    ):
        raise InvalidParameter("malformed cursor: pass the 'next' value of the previous page",
                               field="cursor")
    return tuple(position)
