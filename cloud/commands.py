"""Command dispatch: publish a ``Command`` to a gateway and await its ``CommandResult``.

Request ids are random, so with several cloud nodes (each subscribed plainly to every
``cmd-result``) a node resolves only the requests it has pending and ignores the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from cloud.contract import CMD, Command, CommandAction, CommandResult, WireValue, topic
from cloud.errors import CommandTimeout, DeviceOffline, InvalidParameter
from cloud.store.db import Store
from cloud.store.devices import DeviceRepository
from cloud.store.models import DeviceKind

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, ack_timeout: float
    ) -> None:
        """Publish, waiting for the broker's acknowledgement; raises ``BrokerUnavailable``."""
        ...


@dataclass(frozen=True, slots=True)
class CommandRequest:
    action: CommandAction
    tag: str | None = None
    value: WireValue = None
    timeout: float | None = None


class CommandDispatcher:
    """Sends commands through ``publisher`` and matches results by request id."""

    def __init__(self, store: Store, publisher: Publisher, *, default_timeout: float) -> None:
        self._store = store
        self._publisher = publisher
        self.default_timeout = default_timeout
        self._pending: dict[str, asyncio.Future[CommandResult]] = {}

    @property
    def pending(self) -> int:
        return len(self._pending)

    def resolve(self, result: CommandResult) -> bool:
        """Deliver a result (called by the MQTT subscriber). False if it is not ours or
        arrived after its request gave up."""
        future = self._pending.get(result.id)
        if future is None or future.done():
            return False
        future.set_result(result)
        return True

    async def execute(self, org_id: int, device: str, request: CommandRequest) -> CommandResult:
        """Run a command on ``device`` (a gateway, or a field device via its gateway).

        Raises ``NotFound`` (unknown device or another org's), :class:`DeviceOffline` (fails
        fast when the gateway, or the field device, is known to be offline),
        ``BrokerUnavailable`` and :class:`CommandTimeout`.
        """
        timeout = request.timeout if request.timeout is not None else self.default_timeout
        gateway_name, short_name = await self._target(org_id, device, request)
        request_id = uuid.uuid4().hex
        command = Command(
            id=request_id,
            action=request.action,
            device=short_name,
            tag=request.tag,
            value=request.value,
            deadline=int((time.time() + timeout) * 1000),
        )
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        started = time.monotonic()
        try:
            await self._publisher.publish(
                topic(gateway_name, CMD, request_id),
                command.model_dump_json().encode(),
                qos=1,
                ack_timeout=timeout,
            )
            remaining = max(timeout - (time.monotonic() - started), 0.0)
            try:
                return await asyncio.wait_for(future, remaining)
            except TimeoutError:
                raise CommandTimeout(
                    f"gateway {gateway_name!r} did not answer command {request_id} "
                    f"({request.action} {request.tag or ''}) within {timeout:g} s",
                    request_id=request_id,
                ) from None
        finally:
            self._pending.pop(request_id, None)

    async def _target(
        self, org_id: int, device: str, request: CommandRequest
    ) -> tuple[str, str | None]:
        """(gateway name, field device short name or None), after the fail-fast checks."""
        async with self._store.sessions() as session:
            repo = DeviceRepository(session, org_id)
            row, parent = await repo.get(device)
            if row.kind == DeviceKind.GATEWAY.value:
                gateway, short = row, None
            else:
                if parent is None:  # pragma: no cover - field devices always have a parent
                    raise InvalidParameter(f"field device {device!r} has no gateway")
                gateway, _ = await repo.get(parent)
                short = row.name.removeprefix(f"{parent}.")
                if request.action == "reload_config":
                    raise InvalidParameter(
                        "reload_config is a gateway command; send it to the gateway "
                        f"{parent!r}", field="action",
                    )
                if row.online is False:
                    raise DeviceOffline(
                        f"field device {device!r} is disconnected from its gateway",
                        device=device,
                    )
        if gateway.online is not True:
            if gateway.last_seen_at is None:
                detail = f"gateway {gateway.name!r} has never connected"
            else:
                detail = (
                    f"gateway {gateway.name!r} is offline (last seen "
                    f"{gateway.last_seen_at.isoformat(timespec='seconds')})"
                )
            raise DeviceOffline(detail, device=gateway.name)
        return gateway.name, short
