"""How a device proves who it is, as the MQTT broker and the device API see it.

:class:`DeviceAuthority` is the contract between the broker (``cloud.broker``) and the
registry (``cloud.identity``): the broker terminates TLS and hands over the verified peer
certificate or a username/password, and gets back the device and org it belongs to, or
``None`` to refuse the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """An authenticated gateway: it may use only ``fg/v1/{name}/...`` topics."""

    org_id: int
    device_id: int
    name: str

    @property
    def topic_root(self) -> str:
        return f"fg/v1/{self.name}/"


class DeviceAuthority(Protocol):
    async def trusted_cas(self) -> list[str]:
        """PEM certificates of every enabled org CA: the TLS trust store of device
        connections. Called at broker start."""
        ...

    async def by_certificate(self, der: bytes) -> DeviceIdentity | None:
        """The device of a TLS peer certificate (DER) whose chain TLS has verified.
        ``None`` refuses: unknown issuer, disabled CA, revoked certificate or device,
        expired, or an unknown device while the CA does not allow just-in-time
        registration. May register the device (JIT) as a side effect."""
        ...

    async def by_token(self, username: str, password: str) -> DeviceIdentity | None:
        """The device for MQTT username (device name) + password (a device token
        ``fgd_...``); ``None`` refuses."""
        ...
