"""Who may connect to the embedded broker, and which topics each client may use.

Pure policy, no amqtt: :class:`cloud.broker.EmbeddedBroker` calls
:meth:`BrokerPolicy.admit` with what a CONNECT carried (and the verified TLS peer
certificate) and then asks the :class:`Principal` it got back about every subscription,
publication and delivery.

Three kinds of principal:

* **device** — a gateway, authenticated by its client certificate on the TLS listener or by
  username = its name + password = a device token (``fgd_…``) on the plain listener. It may
  publish, subscribe and receive only under ``fg/v1/{name}/`` (DESIGN §4), and its client
  id must be ``{name}``, ``fieldgate-{name}`` or ``fieldgate-{name}:{suffix}`` (names
  contain no ``:``), so that one gateway cannot claim another's session.
* **internal** — the cloud node's own MQTT client: a credential generated at every broker
  start and held in memory only. Full rights.
* **anonymous** — only when the operator allows anonymous clients (development): full
  rights, because an anonymous client has no name to confine it to.
"""

from __future__ import annotations

import enum
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from cloud.auth.device_identity import DeviceAuthority, DeviceIdentity

log = logging.getLogger(__name__)

INTERNAL_USER_PREFIX = "$fieldgate-cloud-"
"""Usernames of internal credentials start with ``$``, which no device name does."""


class Refused(enum.IntEnum):
    """CONNACK return codes of MQTT 3.1.1 (§3.2.2.3) used to refuse a connection."""

    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_PASSWORD = 4
    NOT_AUTHORIZED = 5


@dataclass(frozen=True, slots=True)
class Credentials:
    """An MQTT username and password."""

    username: str
    password: str

    @classmethod
    def generate(cls) -> Credentials:
        """A fresh internal credential (``$fieldgate-cloud-…``)."""
        return cls(INTERNAL_USER_PREFIX + secrets.token_hex(6), secrets.token_urlsafe(32))

    def matches(self, username: str | None, password: str | None) -> bool:
        if username is None or password is None:
            return False
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok

    def __repr__(self) -> str:  # never print the password
        return f"Credentials(username={self.username!r})"


@dataclass(frozen=True, slots=True)
class Principal:
    """An admitted client; decides its topic rights."""

    kind: Literal["device", "internal", "anonymous"]
    identity: DeviceIdentity | None = None

    @classmethod
    def device(cls, identity: DeviceIdentity) -> Principal:
        return cls("device", identity)

    def __str__(self) -> str:
        if self.identity is not None:
            return f"gateway {self.identity.name!r} (org {self.identity.org_id})"
        return self.kind

    def may_publish(self, topic: str) -> bool:
        """``topic`` is a topic name (no wildcards; the broker refuses those itself)."""
        if self.identity is None:
            return True
        return _under_root(self.identity.name, topic.split("/"), wildcards=False)

    def may_subscribe(self, topic_filter: str) -> bool:
        """Wildcards are allowed only after the device's own ``fg/v1/{name}/`` prefix."""
        if self.identity is None:
            return True
        return _under_root(self.identity.name, topic_filter.split("/"), wildcards=True)

    def may_receive(self, topic: str) -> bool:
        """Checked for every delivery: a second line behind :meth:`may_subscribe`."""
        return self.may_publish(topic)

    def may_take_over(self, owner: Principal | None) -> bool:
        """Whether this principal may take the session (client id) that ``owner`` holds:
        a device only its own, anonymous nobody's but anonymous ones, internal any."""
        if owner is None or owner.kind == "anonymous" or self.kind == "internal":
            return True
        if self.kind == "device" and owner.kind == "device":
            assert self.identity is not None and owner.identity is not None
            return self.identity.device_id == owner.identity.device_id
        return False


def _under_root(name: str, levels: list[str], *, wildcards: bool) -> bool:
    # The first three levels must be exactly fg / v1 / {name}: a "+" or "#" there would
    # reach other gateways' topics. Anything below the root is the gateway's own.
    if len(levels) < 4 or levels[0] != "fg" or levels[1] != "v1" or levels[2] != name:
        return False
    return wildcards or not any(level in ("+", "#") for level in levels[3:])


def client_id_allowed(name: str, client_id: str) -> bool:
    """A device's client id: ``{name}``, ``fieldgate-{name}`` (the gateway's default), or
    ``fieldgate-{name}:{suffix}``; an empty one (the broker assigns a random id, and
    only with a clean session) is allowed too."""
    own = f"fieldgate-{name}"
    return client_id in ("", name, own) or client_id.startswith(own + ":")


class BrokerPolicy:
    """Admission of MQTT clients: certificate, device token, internal credential or
    (opt-in) anonymous. Stateless apart from the internal credential."""

    def __init__(
        self,
        authority: DeviceAuthority | None,
        *,
        internal: Credentials,
        allow_anonymous: bool = False,
    ) -> None:
        self.authority = authority
        self.internal = internal
        self.allow_anonymous = allow_anonymous

    async def admit(
        self,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        tls: bool,
        certificate: bytes | None,
    ) -> Principal | tuple[Refused, str]:
        """The principal of a CONNECT, or the CONNACK code and the reason (for the log) to
        refuse it. ``tls``: it came through the TLS listener, where ``certificate`` (DER,
        chain already verified by TLS) is what identifies a device and a username is
        ignored. Never raises: an authority failure refuses with "server unavailable"."""
        try:
            principal = await self._authenticate(username, password, tls, certificate)
        except Exception as exc:
            log.exception("device authentication failed")
            return Refused.SERVER_UNAVAILABLE, f"authentication unavailable: {exc}"
        if isinstance(principal, tuple):
            return principal
        if principal.identity is not None and not client_id_allowed(
            principal.identity.name, client_id
        ):
            name = principal.identity.name
            return Refused.IDENTIFIER_REJECTED, (
                f"{principal} may not use client id {client_id!r} "
                f"(allowed: {name!r}, 'fieldgate-{name}' or 'fieldgate-{name}:<suffix>')"
            )
        return principal

    async def _authenticate(
        self, username: str | None, password: str | None, tls: bool, certificate: bytes | None
    ) -> Principal | tuple[Refused, str]:
        if tls:
            if certificate is None or self.authority is None:
                return Refused.NOT_AUTHORIZED, "no client certificate"
            identity = await self.authority.by_certificate(certificate)
            if identity is None:
                return Refused.NOT_AUTHORIZED, (
                    "client certificate refused (unknown, revoked or expired certificate, "
                    "disabled CA, or revoked device)"
                )
            return Principal.device(identity)
        if username is None:
            if self.allow_anonymous:
                return Principal("anonymous")
            return Refused.NOT_AUTHORIZED, "anonymous clients are not allowed"
        if self.internal.matches(username, password):
            return Principal("internal")
        if username.startswith(INTERNAL_USER_PREFIX) or self.authority is None:
            return Refused.BAD_USERNAME_PASSWORD, f"unknown user {username!r}"
        identity = await self.authority.by_token(username, password or "")
        if identity is None:
            return Refused.BAD_USERNAME_PASSWORD, (
                f"invalid device token for {username!r} (unknown, expired or revoked token, "
                "revoked device, or the token of another device)"
            )
        return Principal.device(identity)
