"""The adapter contract: what every protocol adapter provides, and the types it speaks.

An adapter owns protocol detail (sessions, request planning, codecs). The runtime owns
time: it schedules reads, applies timeouts, reconnects with backoff and marks quality
when a read fails. Adapters therefore never sleep, loop or retry on their own.

Third-party adapters register an :class:`AdapterPlugin` under the entry-point group
``fieldgate.adapters``; the ``type:`` of a device in the gateway config picks it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.config_types import Duration, Name, TagName
from gateway.errors import (
    AdapterError,
    ConnectError,
    DeviceError,
    ProtocolError,
    ReadOnlyError,
    WriteError,
)

__all__ = [
    "Adapter",
    "AdapterError",
    "AdapterPlugin",
    "ConnectError",
    "DeviceConfig",
    "DeviceError",
    "DiscoveringAdapter",
    "ProtocolError",
    "Quality",
    "ReadOnlyError",
    "Reading",
    "SubscribingAdapter",
    "TagConfig",
    "Value",
    "WriteError",
    "now_ms",
]

Value = bool | int | float | str | None
"""A tag value as it travels through the pipeline."""


class Quality(IntEnum):
    """OPC-style quality of a reading; the integer is the wire code."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


class Reading(NamedTuple):
    """One sampled value. A tuple, because millions of them flow through the hot path."""

    device: str
    tag: str
    ts: int
    """Milliseconds since the Unix epoch, UTC, when the value was sampled."""
    value: Value
    quality: Quality = Quality.GOOD
    reason: str | None = None
    """Why the quality is not good (e.g. ``timeout``, ``modbus exception 2``)."""


def now_ms() -> int:
    """The current wall-clock time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


class TagConfig(BaseModel):
    """Fields every adapter's tag model has; adapters subclass it with protocol fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TagName
    interval: Duration | None = Field(
        default=None, description="Poll interval of this tag; defaults to the device's interval"
    )
    unit: str | None = Field(default=None, description="Engineering unit, e.g. rpm, degC, bar")
    description: str | None = None


class DeviceConfig(BaseModel):
    """Fields every adapter's device model has; adapters subclass it with ``type: Literal[...]``,
    their connection fields and a narrowed ``tags`` list."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: Name
    enabled: bool = True
    interval: Duration = Field(default=1.0, description="Default poll interval of the tags")
    timeout: Duration = Field(default=2.0, description="Time limit of one read of a tag group")
    tags: Sequence[TagConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_tag_names(self) -> DeviceConfig:
        seen: set[str] = set()
        for tag in self.tags:
            if tag.name in seen:
                raise ValueError(f"tag name {tag.name!r} is used twice in device {self.name!r}")
            seen.add(tag.name)
        return self


@runtime_checkable
class Adapter(Protocol):
    """One connection to one field device (or one line of devices).

    Building an adapter does no I/O: it validates config and precomputes read plans.
    """

    async def connect(self) -> None:
        """Open the session. Idempotent; raises :class:`ConnectError` when unreachable."""

    async def read(self, tags: Sequence[Any]) -> list[Reading]:
        """Read ``tags`` (the same sequence object each poll of a group, so plans can be
        cached by identity) and return one reading per tag, in order. A tag the device
        refuses gets a bad-quality reading; a broken session raises :class:`ConnectError`."""

    async def write(self, tag: Any, value: Value) -> Value:
        """Write ``value`` to ``tag``, encoded by the tag's data type; returns the value as
        the device will hold it. Raises :class:`WriteError` for read-only tags or values
        out of range, :class:`DeviceError` when the device refuses."""

    async def close(self) -> None:
        """Close the session. Idempotent; never raises."""


@runtime_checkable
class SubscribingAdapter(Adapter, Protocol):
    """An adapter whose device pushes changes (OPC-UA monitored items, BACnet COV)."""

    def subscribe(self, tags: Sequence[Any]) -> AsyncIterator[list[Reading]]:
        """Yield batches of readings as the device reports changes."""


@runtime_checkable
class DiscoveringAdapter(Adapter, Protocol):
    """An adapter that can list the tags a device offers."""

    async def discover(self) -> list[TagConfig]:
        """Browse the device and return ready-to-use tag configs."""


@dataclass(frozen=True)
class AdapterPlugin:
    """What an entry point in ``fieldgate.adapters`` resolves to."""

    name: str
    """The ``type:`` value in config; equal to the entry-point name."""
    config_model: type[DeviceConfig]
    factory: Callable[[Any], Adapter]
    """Builds an adapter from a validated ``config_model`` instance, without I/O."""
