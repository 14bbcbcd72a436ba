"""The embedded MQTT broker (amqtt) for single-node deployments and tests.

amqtt does not implement shared subscriptions (LIBRARIES.md), so a cloud node that runs
the embedded broker subscribes to telemetry plainly. Clients are anonymous for now.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Self

from amqtt.broker import Broker
from amqtt.session import Session

log = logging.getLogger(__name__)


class _Broker(Broker):
    """amqtt's broker with one fix.

    amqtt 0.12.1 replays, on every CONNECT, the retained messages matching *any* session's
    subscriptions to the connecting client: a gateway would receive every other gateway's
    retained ``status`` (a leak across tenants, and payloads on topics it never subscribed
    to). Retained messages go only to sessions subscribed to the filter; the SUBSCRIBE
    path registers the subscription first, so it is unaffected.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        subscribers = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    """``async with EmbeddedBroker("127.0.0.1", 0) as broker: broker.port``.

    Listens on one TCP listener; ``port`` 0 binds an ephemeral port, and ``port`` is the
    bound one once entered. Not re-entrant.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"broker port must be 0..65535, got {port}")
        self.host = host
        self._requested_port = port
        self._broker: Broker | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The TCP port actually bound (valid inside the ``async with``)."""
        if self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return self._port

    def _config(self) -> dict[str, Any]:
        # amqtt >= 0.11 format: plugins keyed by dotted class path with their config.
        # Only anonymous auth: the $SYS plugin would add a periodic task we do not need.
        host = f"[{self.host}]" if ":" in self.host else self.host
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{self._requested_port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }

    async def __aenter__(self) -> Self:
        if self._broker is not None:
            raise RuntimeError("the embedded broker is already running")
        broker = _Broker(self._config())
        await broker.start()
        self._broker = broker
        self._port = self._bound_port(broker)
        log.info("embedded MQTT broker listening on %s:%d", self.host, self._port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        broker, self._broker, self._port = self._broker, None, None
        if broker is not None:
            await broker.shutdown()

    @staticmethod
    def _bound_port(broker: Broker) -> int:
        # amqtt has no public accessor for the bound address; with port 0 we must read it
        # from the asyncio server of the "default" listener. Kept in this one place.
        server = broker._servers["default"].instance
        sockets = getattr(server, "sockets", None) or ()
        for sock in sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError("the embedded broker has no bound socket")
