"""Device tokens ``fgd_…``: the credential of devices that speak HTTP or CoAP (and of
gateways that use MQTT username/password instead of a client certificate). Shown once,
stored hashed (:mod:`cloud.auth.secrets`), optional expiry, revocable; a token stops
working at once when its device is revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.auth import secrets
from cloud.auth.device_identity import DeviceIdentity
from cloud.errors import InvalidParameter, Unauthorized
from cloud.store.device_tokens import DeviceTokenRepository, find_token_by_prefix, touch_token
from cloud.store.models import Device, DeviceToken, utcnow

TOKEN_PREFIX = "fgd_"
LAST_USED_GRANULARITY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    row: DeviceToken
    secret: str
    """The token in clear: shown once."""


async def issue_token(
    session: AsyncSession,
    device: Device,
    *,
    name: str,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Create a token for ``device`` (flushed, not committed)."""
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidParameter("expires_at must be in the future", field="expires_at")
    token = secrets.generate(TOKEN_PREFIX)
    row = await DeviceTokenRepository(session, device.org_id).add(
        device_id=device.id,
        name=name,
        prefix=secrets.lookup_prefix(token),
        token_hash=secrets.digest(token),
        expires_at=expires_at,
    )
    return IssuedToken(row=row, secret=token)


async def authenticate_token(
    session: AsyncSession, token: str, *, device_name: str | None = None
) -> DeviceIdentity:
    """The device of ``token``; :class:`Unauthorized` when malformed, unknown, expired,
    revoked, the device is revoked, or (``device_name`` given, e.g. the MQTT username)
    the token belongs to another device. Updates ``last_used_at`` coarsely."""
    if not secrets.well_formed(token, TOKEN_PREFIX):
        raise Unauthorized("malformed device token: expected 'fgd_' followed by the secret")
    found = await find_token_by_prefix(session, secrets.lookup_prefix(token))
    if found is None or not secrets.matches(token, found[0].token_hash):
        raise Unauthorized("invalid device token")
    row, device = found
    now = utcnow()
    if row.revoked_at is not None:
        raise Unauthorized("the device token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("the device token has expired")
    if device.revoked_at is not None:
        raise Unauthorized(f"device {device.name!r} is revoked")
    if device_name is not None and device_name != device.name:
        raise Unauthorized("the device token belongs to another device")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        await touch_token(session, row.id, now)
    return DeviceIdentity(org_id=device.org_id, device_id=device.id, name=device.name)
