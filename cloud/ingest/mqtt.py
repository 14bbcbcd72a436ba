"""The MQTT side of a cloud node: one aiomqtt client that ingests and publishes commands.

Delivery is at-least-once end to end: the client keeps a persistent session (fixed client
id, ``clean_session=False``, QoS 1 subscriptions) and acknowledges a message (PUBACK) only
after its data is committed, so the broker re-delivers anything the node had not stored
when it stopped or lost the database. Re-delivery is harmless: ingest is idempotent.

Messages that queue up are written several per transaction. A malformed payload is
logged with its topic, counted and acknowledged (it would fail the same way forever); a
database outage is retried with back-off while the messages stay unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import aiomqtt
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from cloud.contract import (
    CMD_RESULT,
    CMD_RESULT_SUBSCRIPTION,
    EVENTS,
    EVENTS_SUBSCRIPTION,
    STATUS,
    STATUS_SUBSCRIPTION,
    TELEMETRY,
    TELEMETRY_SUBSCRIPTION,
    CommandResult,
    GatewayEvent,
    GatewayStatus,
    TelemetryBatch,
    decode_batch,
    parse_topic,
    shared_subscription,
)
from cloud.errors import BrokerUnavailable
from cloud.ingest.service import IngestService, InvalidBatch

log = logging.getLogger(__name__)

MAX_GROUP_MESSAGES = 100
MAX_GROUP_BYTES = 2 * 1024 * 1024
"""A transaction takes the messages already queued, up to these bounds. Bounded because the
broker waits for the PUBACK (amqtt gives up after 5 s)."""
RETRY_INITIAL = 0.5
RETRY_MAX = 10.0


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying (the store is unreachable), as opposed to a payload
    the store refuses."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


def _ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Send the PUBACK of ``message`` now that it is stored.

    aiomqtt acknowledges on receipt and has no manual-ack API, so this reaches the
    underlying paho client (``manual_ack_set(True)`` is switched on in ``_connect``).
    This and ``_connect`` are the only places that touch paho directly.
    """
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)


class MqttSubscriber:
    """``async with MqttSubscriber(...) as mqtt``: ingests and lets callers ``publish``.

    Subscribes to telemetry (``$share/{group}/...`` when ``share_group`` is set, which external
    brokers support and amqtt does not), status, events and command results (handed to
    ``on_command_result``, set before entering). ``username``/``password``: the embedded
    broker's internal credential, or the external broker's account. Reconnects
    with back-off. ``__aenter__`` waits up to ``connect_timeout`` for the first
    subscription, then returns either way (``ready`` tells which); the API stays up while
    the broker is away and commands fail with 503.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        ingest: IngestService,
        share_group: str | None,
        on_command_result: Callable[[CommandResult], object] | None = None,
        connect_timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.username = username
        self._password = password
        self.ingest = ingest
        self.on_command_result = on_command_result
        self.telemetry_subscription = (
            TELEMETRY_SUBSCRIPTION if share_group is None
            else shared_subscription(TELEMETRY_SUBSCRIPTION, share_group)
        )
        self.connect_timeout = connect_timeout
        self.ready = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def __aenter__(self) -> Self:
        if self._task is not None:
            raise RuntimeError("MqttSubscriber is already running")
        self._task = asyncio.create_task(self._run(), name="fieldgate-cloud-mqtt")
        try:
            await asyncio.wait_for(self.ready.wait(), self.connect_timeout)
        except TimeoutError:
            log.warning(
                "MQTT broker %s:%d not reachable after %.0f s; retrying in the background",
                self.host, self.port, self.connect_timeout,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, ack_timeout: float
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK.

        Raises :class:`BrokerUnavailable` when not connected or the broker does not answer.
        """
        client = self._client
        if client is None:
            raise BrokerUnavailable(f"not connected to the MQTT broker at {self.host}:{self.port}")
        try:
            await client.publish(topic, payload, qos=qos, timeout=ack_timeout)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"publishing to {topic} failed: {exc}") from exc

    # -- connection ----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                await self._connect()
                delay = RETRY_INITIAL  # the session ended after working: retry promptly
            except aiomqtt.MqttError as exc:
                log.warning("MQTT connection to %s:%d lost: %s", self.host, self.port, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _connect(self) -> None:
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self.username,
            password=self._password,
            clean_session=False,
            keepalive=30,
        )
        # PUBACK only after commit (see _ack): paho must not acknowledge on receipt.
        client._client.manual_ack_set(True)
        async with client:
            await client.subscribe(
                [
                    (self.telemetry_subscription, 1),
                    (STATUS_SUBSCRIPTION, 1),
                    (EVENTS_SUBSCRIPTION, 1),
                    (CMD_RESULT_SUBSCRIPTION, 1),
                ]
            )
            log.info(
                "MQTT connected to %s:%d as %s, telemetry via %s",
                self.host, self.port, self.client_id, self.telemetry_subscription,
            )
            self._client = client
            self.ready.set()
            try:
                await self._consume(client)
            finally:
                self._client = None

    async def _consume(self, client: aiomqtt.Client) -> None:
        messages = client.messages
        async for first in messages:
            group = [first]
            size = len(first.payload)
            while len(messages) and len(group) < MAX_GROUP_MESSAGES and size < MAX_GROUP_BYTES:
                message = await anext(messages)
                group.append(message)
                size += len(message.payload)
            await self._process(group)
            for message in group:
                _ack(client, message)

    # -- processing ----------------------------------------------------------------------

    async def _process(self, group: list[aiomqtt.Message]) -> None:
        """Store everything in ``group`` that can be stored; returns when it is committed.

        Never raises for bad payloads; retries (forever, until cancelled) while the store
        is unavailable.
        """
        telemetry: list[tuple[str, TelemetryBatch]] = []
        others: list[tuple[str, str, bytes]] = []
        for message in group:
            name = message.topic.value
            parts = parse_topic(name)
            if parts is None:
                log.debug("ignoring message on %s (outside the contract)", name)
                continue
            payload = _payload(message)
            if parts.leaf == TELEMETRY:
                try:
                    telemetry.append((parts.gateway_id, decode_batch(payload)))
                except ValidationError as exc:
                    await self.ingest.record_malformed(name, exc)
            elif parts.leaf == CMD_RESULT:
                await self._command_result(name, payload)
            elif parts.leaf in (STATUS, EVENTS):
                others.append((name, parts.leaf, payload))
        if telemetry:
            await self._retrying("telemetry", self._store_telemetry, telemetry)
        for name, leaf, payload in others:
            await self._retrying(name, self._store_other, name, leaf, payload)

    async def _store_telemetry(self, items: list[tuple[str, TelemetryBatch]]) -> None:
        try:
            await self.ingest.ingest_telemetry_many(items)
            return
        except InvalidBatch:
            pass  # find which one below
        except Exception as exc:
            if is_transient(exc) or len(items) == 1:
                raise
            log.warning("a group of %d batches failed; storing them one by one", len(items))
        for gateway, batch in items:
            source = f"fg/v1/{gateway}/telemetry (seq {batch.first}..{batch.last})"
            try:
                await self.ingest.ingest_telemetry(gateway, batch)
            except InvalidBatch as exc:
                await self.ingest.record_malformed(source, exc)
            except Exception as exc:
                if is_transient(exc):
                    raise
                await self.ingest.record_failed(source, exc)

    async def _store_other(self, name: str, leaf: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained message
        gateway = name.split("/")[2]
        try:
            if leaf == STATUS:
                await self.ingest.handle_status(gateway, GatewayStatus.model_validate_json(payload))
            else:
                await self.ingest.handle_event(gateway, GatewayEvent.model_validate_json(payload))
        except (ValidationError, InvalidBatch) as exc:
            await self.ingest.record_malformed(name, exc)

    async def _retrying(
        self, what: str, func: Callable[..., Awaitable[None]], *args: object
    ) -> None:
        delay = RETRY_INITIAL
        while True:
            try:
                await func(*args)
                return
            except Exception as exc:
                if not is_transient(exc):
                    await self.ingest.record_failed(what, exc)
                    return
                log.warning("store unavailable (%s); retrying %s in %.1f s", exc, what, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _command_result(self, name: str, payload: bytes) -> None:
        try:
            result = CommandResult.model_validate_json(payload)
        except ValidationError as exc:
            await self.ingest.record_malformed(name, exc)
            return
        if self.on_command_result is not None:
            self.on_command_result(result)


def _payload(message: aiomqtt.Message) -> bytes:
    payload = message.payload
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return str(payload).encode()
