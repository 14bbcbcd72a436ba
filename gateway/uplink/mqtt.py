"""MQTT uplink (aiomqtt): QoS 1 telemetry, retained status with a Last Will, commands.

One background task owns the connection: it connects, announces ``online``, subscribes
to ``cmd/+``, refreshes the status periodically and reconnects with backoff when the
broker goes away. Publishers never wait for a reconnect: they get an ``UplinkError`` at
once and keep their data (the forwarder re-reads it from the buffer).

A refused connection (CONNACK refused, TLS refused, the gateway's topics not granted) is
retried with the same backoff; ``last_error`` and the log say why in words that point at
the setting to fix (:func:`describe_failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType

import aiomqtt
import orjson
from aiomqtt.exceptions import MqttConnectError  # not re-exported by aiomqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from adapters.base import now_ms
from cloud import contract
from cloud.contract import Command, CommandResult, GatewayEvent, GatewayStatus
from gateway.backoff import Backoff
from gateway.config import MqttUplinkConfig
from gateway.errors import UplinkError

log = logging.getLogger(__name__)

StatusProvider = Callable[[], Awaitable[GatewayStatus]]


class _TopicsRefused(Exception):
    """The broker accepted the connection but not the gateway's own topics."""


_HINTS = {
    # MQTT 3.1.1 CONNACK codes and the MQTT 5 reason codes paho reports for them
    2: "the client id is not allowed with these credentials: leave uplink.client_id unset "
    "(fieldgate-{gateway id}) and use the gateway's own credentials (uplink.username = "
    "the gateway id)",
    3: "the broker cannot check credentials right now",
    4: "check uplink.username (the gateway id) and uplink.password (its device token fgd_...)",
    5: "the credentials or client certificate are not accepted: revoked device, certificate "
    "or token, or the credentials of another gateway (uplink.username = the gateway id)",
}
_V5_TO_V3 = {133: 2, 136: 3, 134: 4, 135: 5}


def describe_failure(exc: BaseException, *, tls: bool) -> str:
    """What went wrong with a connection attempt, in words an operator can act on."""
    if isinstance(exc, MqttConnectError):
        rc = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
        hint = _HINTS.get(_V5_TO_V3.get(rc, rc) if isinstance(rc, int) else -1)
        return f"the broker refused the connection ({exc})" + (f": {hint}" if hint else "")
    text = str(exc) or type(exc).__name__
    if tls and isinstance(exc, aiomqtt.MqttError) and not isinstance(exc, aiomqtt.MqttCodeError):
        lowered = text.lower()
        if any(s in lowered for s in ("timed out", "reset", "eof", "closed", "certificate")):
            # A broker that rejects the client certificate just closes the connection
            # (with TLS 1.3 only after the client has sent CONNECT): no CONNACK to read.
            text += (
                " (a broker that does not accept the client certificate closes the TLS "
                "connection like this: check uplink.tls.cert/key, their CA and expiry)"
            )
    return text


class MqttUplink:
    """Owns the MQTT session of one gateway. Use as ``async with``."""

    def __init__(
        self,
        config: MqttUplinkConfig,
        gateway_id: str,
        status: StatusProvider,
        *,
        status_interval: float = 30.0,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self._status = status
        self._status_interval = status_interval
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()
        self._commands: asyncio.Queue[Command] = asyncio.Queue(maxsize=1000)
        self._task: asyncio.Task[None] | None = None
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)
        self.connects = 0
        self.last_error: str | None = None
        self._topic_telemetry = contract.topic(gateway_id, contract.TELEMETRY)
        self._topic_status = contract.topic(gateway_id, contract.STATUS)
        self._topic_events = contract.topic(gateway_id, contract.EVENTS)

    async def __aenter__(self) -> MqttUplink:
        self._task = asyncio.create_task(self._run(), name=f"mqtt-uplink-{self.gateway_id}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        client = self._client
        if client is not None and self._connected.is_set():
            # A clean disconnect suppresses the Last Will, so say "offline" ourselves.
            with contextlib.suppress(Exception):
                offline = GatewayStatus(state="offline", ts=now_ms())
                await client.publish(
                    self._topic_status, offline.model_dump_json(exclude_none=True),
                    qos=1, retain=True, timeout=2.0,
                )
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        await self._lost.wait()

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None and not self.config.url.startswith("mqtts"):
            return None
        context = ssl.create_default_context(cafile=tls.ca if tls else None)
        if tls is not None and tls.cert:
            context.load_cert_chain(tls.cert, tls.key)
        if tls is not None and tls.insecure:
            context.check_hostname = False
        return context

    def _make_client(self) -> aiomqtt.Client:
        offline = GatewayStatus(state="offline", ts=now_ms())
        will = aiomqtt.Will(
            self._topic_status, offline.model_dump_json(exclude_none=True), qos=1, retain=True
        )
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            identifier=self.config.client_id or f"fieldgate-{self.gateway_id}",
            username=self.config.username,
            password=self.config.password,
            will=will,
            keepalive=self.config.keepalive,
            # A persistent session keeps commands the cloud sent during a short outage;
            # their deadline stops them from running late.
            clean_session=False,
            tls_context=self._tls_context(),
            max_inflight_messages=self.config.inflight + 4,
            timeout=10.0,
        )
        client.pending_calls_threshold = self.config.inflight + 16
        return client

    async def _run(self) -> None:
        while True:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    self._lost.clear()
                    await self._subscribe_commands(client)
                    await self._publish_status(client)
                    self.connects += 1
                    self._backoff.reset()
                    self.last_error = None
                    self._connected.set()
                    log.info("uplink connected to %s", self.config.url)
                    refresher = asyncio.create_task(
                        self._refresh_status(client), name="mqtt-status"
                    )
                    try:
                        await self._receive(client)
                    finally:
                        refresher.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await refresher
            except (aiomqtt.MqttError, _TopicsRefused) as exc:
                self.last_error = describe_failure(exc, tls=self._tls_context() is not None)
            except Exception as exc:
                # e.g. an unreadable TLS file or a status that cannot be built: report it
                # and keep retrying rather than leave the gateway without an uplink.
                log.exception("uplink failed")
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._connected.clear()
                self._lost.set()
                self._client = None
            delay = self._backoff.next()
            log.warning(
                "uplink to %s unavailable (%s); retrying in %.1f s",
                self.config.url, self.last_error, delay,
            )
            await asyncio.sleep(delay)

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        """Subscribe to ``cmd/+``. A refusal means the broker's ACL does not give this
        connection the gateway's topics (credentials of another gateway): its telemetry
        would be acknowledged and dropped, so the connection is abandoned instead."""
        topic = contract.topic(self.gateway_id, contract.CMD, "+")
        granted = await client.subscribe(topic, qos=1)
        codes = [c.value if isinstance(c, ReasonCode) else int(c) for c in granted]
        if not codes or any(code >= 0x80 for code in codes):
            raise _TopicsRefused(
                f"the broker refused the subscription to {topic}: these credentials do not "
                f"give access to gateway {self.gateway_id!r}'s topics (uplink.username must "
                f"be the gateway id, the token or certificate that gateway's)"
            )

    async def _publish_status(self, client: aiomqtt.Client) -> None:
        status = await self._status()
        await client.publish(
            self._topic_status, status.model_dump_json(exclude_none=True), qos=1, retain=True
        )

    async def _refresh_status(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self._status_interval)
            await self._publish_status(client)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = contract.parse_topic(str(message.topic))
            if parts is None or parts.leaf != contract.CMD or parts.request_id is None:
                continue
            payload = message.payload
            raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            try:
                command = Command.model_validate_json(raw)
            except ValidationError as exc:
                log.warning("malformed command on %s: %s", message.topic, exc)
                await self.publish_command_result(CommandResult(
                    id=parts.request_id, ok=False, ts=now_ms(), code="bad_request",
                    error=f"malformed command: {exc.errors()[0]['msg']} at "
                    f"{'.'.join(str(p) for p in exc.errors()[0]['loc']) or 'body'}",
                ))
                continue
            if command.id != parts.request_id:
                command = command.model_copy(update={"id": parts.request_id})
            try:
                self._commands.put_nowait(command)
            except asyncio.QueueFull:
                await self.publish_command_result(CommandResult(
                    id=command.id, ok=False, ts=now_ms(), code="internal",
                    error="gateway command queue is full",
                ))

    async def commands(self) -> AsyncIterator[Command]:
        while True:
            yield await self._commands.get()

    async def publish_telemetry(self, payload: bytes) -> None:
        await self._publish_acknowledged(self._topic_telemetry, payload)

    async def _publish_acknowledged(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 and return on PUBACK; raise ``UplinkError`` at once if the
        connection is (or goes) down, instead of waiting for a timeout."""
        client = self._client
        if client is None or not self._connected.is_set():
            raise UplinkError(f"not connected to {self.config.url}")
        lost = self._lost
        publish = asyncio.ensure_future(
            client.publish(topic, payload, qos=1, timeout=self.config.publish_timeout)
        )
        watcher = asyncio.ensure_future(lost.wait())
        try:
            await asyncio.wait({publish, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not publish.done():
                publish.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await publish
        if not publish.done() or publish.cancelled():
            raise UplinkError("connection lost before the broker acknowledged the message")
        exc = publish.exception()
        if exc is not None:
            raise UplinkError(f"publish failed: {exc}") from exc

    async def publish_event(self, event: GatewayEvent) -> None:
        """Publish at QoS 1; raises ``UplinkError`` so the caller can keep it and retry."""
        await self._publish_acknowledged(
            self._topic_events, event.model_dump_json(exclude_none=True).encode()
        )

    async def publish_command_result(self, result: CommandResult) -> None:
        try:
            await self._publish_acknowledged(
                contract.topic(self.gateway_id, contract.CMD_RESULT, result.id),
                orjson.dumps(result.model_dump(exclude_none=True)),
            )
        except UplinkError as exc:
            log.warning("result of command %s not delivered (%s)", result.id, exc)
