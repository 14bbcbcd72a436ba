"""The uplink contract used by the forwarder and the command router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from cloud.contract import Command, CommandResult, GatewayEvent


class Uplink(Protocol):
    """A connection to the cloud that reconnects by itself.

    ``publish_telemetry`` returns only once the cloud side acknowledged the message (MQTT
    PUBACK, HTTP 2xx, CoAP ACK); it raises :class:`gateway.errors.UplinkError` when the
    connection is down or breaks before the acknowledgement, so the caller keeps the
    data and sends it again later.
    """

    async def wait_connected(self) -> None:
        """Return once the uplink is connected (immediately if it is)."""

    async def wait_disconnected(self) -> None:
        """Return once the current connection is lost."""

    async def publish_telemetry(self, payload: bytes) -> None: ...

    async def publish_event(self, event: GatewayEvent) -> None:
        """Returns once acknowledged; raises ``UplinkError`` like ``publish_telemetry``."""

    async def publish_command_result(self, result: CommandResult) -> None: ...

    def commands(self) -> AsyncIterator[Command]:
        """Commands from the cloud, already validated."""
