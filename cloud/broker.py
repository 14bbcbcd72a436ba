"""The embedded MQTT broker (amqtt) for single-node deployments and tests.

Two listeners:

* **plain** (``host:port``): devices authenticate with username = gateway name and
  password = device token; the cloud node's own client with an internal credential
  generated at every start (:attr:`EmbeddedBroker.internal`, in memory only). Anonymous
  clients only when explicitly allowed (development).
* **TLS** (optional, ``tls.port``): mutual TLS. A client certificate is required and must
  chain to an org CA (the trust store is loaded from the device authority at start and
  extended at run time by :meth:`EmbeddedBroker.trust`); the authority then maps it to a
  device (revoked certificates and devices are refused in the CONNACK).

Every admitted client gets a :class:`cloud.broker_auth.Principal`; a device may publish,
subscribe and receive only under ``fg/v1/{its name}/``. A refused publish is dropped (the
QoS 1 PUBACK is still sent, as MQTT 3.1.1 has no negative acknowledgement, like
Mosquitto); a refused subscription gets the failure return code 0x80 in the SUBACK.

amqtt does not implement shared subscriptions (LIBRARIES.md), so a cloud node that runs
the embedded broker subscribes to telemetry plainly.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, ListenerConfig
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id

from cloud.auth import x509
from cloud.auth.device_identity import DeviceAuthority
from cloud.auth.keystore import secret_file_for
from cloud.broker_auth import BrokerPolicy, Credentials, Principal, Refused
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

PLAIN_LISTENER = "default"
TLS_LISTENER = "tls"
BROKER_CA_FILE = "broker-ca.pem"
BROKER_CA_KEY_FILE = "broker-ca.key"
ASSIGNED_ID_PREFIX = "amqtt/"
"""What amqtt's ``gen_client_id`` puts before the ids it assigns to clients that sent an
empty one. A client may send such an id itself, but can only get a clean session with it,
and never one that another principal holds (``_check_session``)."""
_PRINCIPAL = "fieldgate_principal"
"""Attribute of an amqtt ``Session`` that holds its :class:`Principal`."""


def principal_of(session: Session) -> Principal | None:
    principal = getattr(session, _PRINCIPAL, None)
    return principal if isinstance(principal, Principal) else None


class _Broker(Broker):
    """amqtt's broker with admission control and a topic ACL, and one fix.

    *Admission before session state.* amqtt 0.12.1 authenticates only after it has
    deleted (clean session) or updated (persistent session) the existing session of the
    client id, and it takes over a connected session before it sends a refusing CONNACK:
    an unauthenticated client could disconnect a gateway or wipe the cloud's persistent
    session. Here the CONNECT is admitted first (:meth:`_initialize_client_session`), and
    a session held by another principal cannot be taken.

    *Retained messages.* amqtt replays, on every CONNECT, the retained messages matching
    *any* session's subscriptions to the connecting client: a gateway would receive every
    other gateway's retained ``status``. Retained messages go only to sessions subscribed
    to the filter; the SUBSCRIBE path registers the subscription first, so it is unaffected.
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        policy: BrokerPolicy,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._policy = policy
        self._ssl_context = ssl_context
        super().__init__(config)

    def _create_ssl_context(self, listener: ListenerConfig) -> ssl.SSLContext:  # type: ignore[override]
        # amqtt builds a context with CERT_OPTIONAL from files; ours requires a client
        # certificate and trusts only the org CAs (EmbeddedBroker._tls_context).
        if self._ssl_context is None:
            raise RuntimeError("a TLS listener without a TLS context")
        return self._ssl_context

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        # Same as amqtt 0.12.1's, with _admit between reading the CONNECT and touching
        # any existing session. Raising AMQTTError/MQTTError ends the connection.
        peer = f"{remote_address}:{remote_port}"
        try:
            handler, incoming = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            log.warning("%s: cannot read the first packet as CONNECT: %s", peer, exc)
            raise
        except MQTTError:
            log.warning("%s: invalid CONNECT", peer)
            await writer.close()
            raise
        except NoDataError as exc:
            raise AMQTTError(exc) from exc

        principal = await self._admit(incoming, writer, peer)
        if incoming.clean_session:
            if incoming.client_id:
                await self._delete_session(incoming.client_id)
            else:
                incoming.client_id = gen_client_id()
            incoming.parent = 0
            session = incoming
        elif incoming.client_id in self._sessions:
            # the new connection brings its own will, keep-alive and credentials
            session, _ = self._sessions[incoming.client_id]
            session.will_flag = incoming.will_flag
            session.will_message = incoming.will_message
            session.will_topic = incoming.will_topic
            session.will_qos = incoming.will_qos
            session.will_retain = incoming.will_retain
            session.keep_alive = incoming.keep_alive
            session.username = incoming.username
            session.password = incoming.password
            session.ssl_object = incoming.ssl_object
            session.parent = 1
        else:
            incoming.parent = 0
            session = incoming
        setattr(session, _PRINCIPAL, principal)
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session

    async def _admit(self, incoming: Session, writer: WriterAdapter, peer: str) -> Principal:
        """The principal of ``incoming``, or refuse it (CONNACK, close, MQTTError)."""
        ssl_object = incoming.ssl_object
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        client_id = incoming.client_id or ""
        # amqtt replaces an empty client id (allowed with a clean session only) by a
        # random "amqtt/…" one before we see it; the policy wants to know it was empty.
        assigned = incoming.clean_session and client_id.startswith(ASSIGNED_ID_PREFIX)
        decision = await self._policy.admit(
            client_id="" if assigned else client_id,
            username=incoming.username,
            password=incoming.password,
            tls=ssl_object is not None,
            certificate=certificate,
        )
        if isinstance(decision, Principal):
            decision = self._check_session(decision, incoming, client_id)
        if isinstance(decision, Principal):
            log.info("%s connected as %r: %s", peer, client_id, decision)
            return decision
        code, reason = decision
        log.warning("MQTT connection refused: %r from %s: %s", client_id, peer, reason)
        await ConnackPacket.build(0, int(code)).to_stream(writer)
        await writer.close()
        raise MQTTError(f"connection of {client_id!r} from {peer} refused: {reason}")

    def _check_session(
        self, principal: Principal, incoming: Session, client_id: str
    ) -> Principal | tuple[Refused, str]:
        """The session ``client_id`` must not belong to someone else, and the will (which
        amqtt publishes without asking the ACL) must be on a topic the client may use."""
        owner = self._sessions.get(client_id)
        if owner is not None and not principal.may_take_over(principal_of(owner[0])):
            return Refused.IDENTIFIER_REJECTED, (
                f"client id {client_id!r} belongs to {principal_of(owner[0])}"
            )
        if incoming.will_flag and not principal.may_publish(incoming.will_topic or ""):
            return Refused.NOT_AUTHORIZED, (
                f"{principal} may not set a will on {incoming.will_topic!r}"
            )
        return principal

    async def _authenticate(self, session: Session, _: ListenerConfig) -> bool:
        # Admission already happened in _initialize_client_session.
        return principal_of(session) is not None

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        principal = principal_of(session)
        if principal is None:
            return False
        if action == Action.SUBSCRIBE:
            allowed = principal.may_subscribe(topic)
        elif action == Action.PUBLISH:
            allowed = principal.may_publish(topic)
        else:
            return principal.may_receive(topic)
        if not allowed:
            log.warning(
                "%s (client %r) may not %s %r", principal, session.client_id,
                "subscribe to" if action == Action.SUBSCRIBE else "publish on", topic,
            )
        return allowed

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        subscribers = self._subscriptions.get(subscription[0], ())
        if any(s.client_id == session.client_id for s, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The TLS listener: its port (0 = ephemeral) and the broker's server certificate."""

    port: int
    certificate_pem: str
    key_pem: str
    ca_pem: str | None
    """The CA that signed ``certificate_pem``: what gateways trust to verify the broker."""


class EmbeddedBroker:
    """``async with EmbeddedBroker("127.0.0.1", 0, authority=...) as broker: broker.port``.

    ``port``/``tls.port`` 0 bind ephemeral ports; :attr:`port` and :attr:`tls_port` are the
    bound ones once entered. Without an ``authority`` only the internal credential (and
    anonymous clients, if allowed) can connect. Not re-entrant.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        authority: DeviceAuthority | None = None,
        tls: BrokerTls | None = None,
        allow_anonymous: bool = False,
    ) -> None:
        for value in (port, tls.port if tls else 0):
            if not 0 <= value <= 65535:
                raise ValueError(f"broker port must be 0..65535, got {value}")
        if tls is not None and authority is None:
            raise ValueError("a TLS listener needs a device authority to map certificates")
        self.host = host
        self._requested_port = port
        self._authority = authority
        self._tls = tls
        self.internal = Credentials.generate()
        """Full-rights credential of the cloud node's own client (plain listener)."""
        self._policy = BrokerPolicy(
            authority, internal=self.internal, allow_anonymous=allow_anonymous
        )
        self._broker: Broker | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._port: int | None = None
        self._tls_port: int | None = None

    @property
    def port(self) -> int:
        """The plain TCP port actually bound (valid inside the ``async with``)."""
        if self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return self._port

    @property
    def tls_port(self) -> int | None:
        """The TLS port actually bound, or None without a TLS listener."""
        return self._tls_port

    @property
    def ca_pem(self) -> str | None:
        """PEM of the CA that signed the broker's server certificate (for gateways)."""
        return self._tls.ca_pem if self._tls is not None else None

    def trust(self, pem: str) -> None:
        """Accept client certificates issued by the CA ``pem`` from now on (a new org CA).
        Idempotent; a no-op without a running TLS listener. Raises ``ssl.SSLError`` for
        a PEM that is not a certificate."""
        if self._ssl_context is not None:
            self._ssl_context.load_verify_locations(cadata=pem)
            log.info("the MQTT TLS listener now trusts %s", _subject(pem))

    def _config(self) -> dict[str, Any]:
        # amqtt >= 0.11 format. No plugins: admission and the topic ACL are the broker
        # subclass's (see _Broker), and the $SYS plugin would add a task we do not need.
        listeners: dict[str, Any] = {
            PLAIN_LISTENER: {"type": "tcp", "bind": _bind(self.host, self._requested_port)}
        }
        if self._tls is not None:
            listeners[TLS_LISTENER] = {
                "type": "tcp", "bind": _bind(self.host, self._tls.port), "ssl": True
            }
        return {"listeners": listeners, "plugins": {}}

    async def _tls_context(self, tls: BrokerTls) -> ssl.SSLContext:
        # PROTOCOL_TLS_SERVER rather than create_default_context(CLIENT_AUTH): the latter
        # also trusts the system's public CAs for client certificates.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        # ssl loads a certificate chain only from files: write them to a private
        # temporary directory for the moment of loading.
        with tempfile.TemporaryDirectory(prefix="fieldgate-broker-") as tmp:
            cert, key = Path(tmp) / "server.pem", Path(tmp) / "server.key"
            cert.write_text(tls.certificate_pem, encoding="ascii")
            key.touch(0o600)
            key.write_text(tls.key_pem, encoding="ascii")
            context.load_cert_chain(cert, key)
        assert self._authority is not None
        for pem in await self._authority.trusted_cas():
            context.load_verify_locations(cadata=pem)
        return context

    async def __aenter__(self) -> Self:
        if self._broker is not None:
            raise RuntimeError("the embedded broker is already running")
        if self._tls is not None:
            self._ssl_context = await self._tls_context(self._tls)
        if self._policy.allow_anonymous:
            log.warning(
                "the embedded MQTT broker accepts anonymous clients with full topic rights "
                "(development only: set broker_allow_anonymous=false in production)"
            )
        broker = _Broker(self._config(), policy=self._policy, ssl_context=self._ssl_context)
        await broker.start()
        self._broker = broker
        self._port = _bound_port(broker, PLAIN_LISTENER)
        log.info("embedded MQTT broker listening on %s:%d", self.host, self._port)
        if self._tls is not None:
            self._tls_port = _bound_port(broker, TLS_LISTENER)
            log.info("embedded MQTT broker: mutual TLS on %s:%d", self.host, self._tls_port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        broker, self._broker, self._port, self._tls_port = self._broker, None, None, None
        self._ssl_context = None
        if broker is not None:
            await broker.shutdown()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bound_port(broker: Broker, listener: str) -> int:
    # amqtt has no public accessor for the bound address; with port 0 we must read it
    # from the asyncio server of the listener. Kept in this one place.
    server = broker._servers[listener].instance
    sockets = getattr(server, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError(f"the embedded broker's {listener!r} listener has no bound socket")


def _subject(pem: str) -> str:
    try:
        return x509.load_certificate(pem).subject.rfc4514_string()
    except x509.CertificateError:
        return "a CA"


# -- the broker's server certificate -------------------------------------------------------


def load_broker_tls(settings: CloudSettings) -> BrokerTls | None:
    """The TLS listener of ``settings`` (None when ``broker_tls_port`` is None).

    With ``broker_tls_cert``/``broker_tls_key`` those files are used (and
    ``broker_tls_ca``, if set, is what gateways get to verify the broker). Otherwise a
    broker CA is generated once and kept next to the SQLite database
    (``broker-ca.pem``/``broker-ca.key``; in memory on PostgreSQL, so a new one at every
    start), and a server certificate for ``broker_host``, ``broker_tls_hosts``, this
    host's name, localhost and the loopback addresses is signed with it at every start.
    Raises ``OSError``/``x509.CertificateError`` for unreadable files.
    """
    if settings.broker_tls_port is None:
        return None
    if settings.broker_tls_cert is not None and settings.broker_tls_key is not None:
        ca_file = settings.broker_tls_ca
        return BrokerTls(
            port=settings.broker_tls_port,
            certificate_pem=settings.broker_tls_cert.read_text(encoding="ascii"),
            key_pem=settings.broker_tls_key.read_text(encoding="ascii"),
            ca_pem=ca_file.read_text(encoding="ascii") if ca_file is not None else None,
        )
    ca = _broker_ca(_broker_ca_dir(settings.db_url))
    wildcard = ("", "0.0.0.0", "::")
    hosts = [h for h in (settings.broker_host, *settings.broker_tls_hosts) if h not in wildcard]
    hosts += ["localhost", socket.gethostname(), "127.0.0.1", "::1"]
    server = x509.server_certificate(
        x509.load_certificate(ca.certificate_pem), x509.load_private_key(ca.key_pem),
        list(dict.fromkeys(hosts)),
    )
    return BrokerTls(
        settings.broker_tls_port, server.certificate_pem, server.key_pem, ca.certificate_pem
    )


def _broker_ca_dir(db_url: str) -> Path | None:
    # The same directory as the CA key-encryption secret: next to the SQLite database.
    path = secret_file_for(db_url)
    return None if path is None else path.parent


def _broker_ca(directory: Path | None) -> x509.KeyPair:
    """The broker CA kept in ``directory`` (created on first use), or a new one in memory."""
    if directory is None:
        return x509.generate_ca("fieldgate broker CA", organization="fieldgate")
    cert_path, key_path = directory / BROKER_CA_FILE, directory / BROKER_CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        pair = x509.KeyPair(cert_path.read_text("ascii"), key_path.read_text("ascii"))
        problem = x509.validity_problem(x509.load_certificate(pair.certificate_pem))
        if problem is None:
            x509.load_private_key(pair.key_pem)  # fail early on a damaged key file
            return pair
        log.warning("the broker CA %s is unusable (%s); generating a new one", cert_path, problem)
    pair = x509.generate_ca("fieldgate broker CA", organization="fieldgate")
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(pair.key_pem)
    cert_path.write_text(pair.certificate_pem, encoding="ascii")
    log.info("generated the broker CA %s (gateways trust it to verify the broker)", cert_path)
    return pair
