"""API keys: ``fgk_`` + 256 random bits, shown once, stored as SHA-256.

A key is high-entropy, so a plain SHA-256 is enough (a slow KDF protects guessable
passwords, not random keys). The first :data:`PREFIX_LENGTH` characters are stored in the
clear as a unique lookup prefix, so authentication is one indexed read plus a
constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import Forbidden, Unauthorized
from cloud.store.api_keys import ApiKeyRepository, find_key_by_prefix, touch_key
from cloud.store.models import ApiKey, Role, utcnow

KEY_PREFIX = "fgk_"
PREFIX_LENGTH = 12
"""Characters of the key (``fgk_`` included) stored for lookup."""
LAST_USED_GRANULARITY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key: not a write per request."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from an API key by :func:`authenticate`."""

    org_id: int
    key_id: int
    role: Role

    def require(self, role: Role) -> None:
        """Raise :class:`Forbidden` unless this principal's role is at least ``role``."""
        if self.role.rank < role.rank:
            raise Forbidden(
                f"this action needs role {role.value!r}; the key has {self.role.value!r}"
            )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key; ``secret`` is the only copy of the key in clear."""

    row: ApiKey
    secret: str


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def issue_key(
    session: AsyncSession, org_id: int, *, name: str, role: Role = Role.VIEWER
) -> IssuedKey:
    """Create a key for the org; the caller shows ``secret`` once and commits."""
    key = generate_key()
    row = await ApiKeyRepository(session, org_id).add(
        name=name, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key), role=role.value
    )
    return IssuedKey(row=row, secret=key)


async def authenticate(session: AsyncSession, key: str | None) -> Principal:
    """The principal of a presented key; raises :class:`Unauthorized` (missing, malformed,
    unknown or revoked key). Updates ``last_used_at`` (coarsely) in the caller's session."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer fgk_...'")
    if not key.startswith(KEY_PREFIX) or len(key) <= PREFIX_LENGTH:
        raise Unauthorized("malformed API key: expected 'fgk_' followed by the secret")
    row = await find_key_by_prefix(session, key[:PREFIX_LENGTH])
    if row is None or not hmac.compare_digest(row.key_hash, hash_key(key)):
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("the API key was revoked")
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        await touch_key(session, row.id, now)
    return Principal(org_id=row.org_id, key_id=row.id, role=Role(row.role))


async def list_keys(session: AsyncSession, principal: Principal) -> list[ApiKey]:
    return await ApiKeyRepository(session, principal.org_id).list()


async def create_key(
    session: AsyncSession, principal: Principal, *, name: str, role: Role
) -> IssuedKey:
    """Mint a key in the caller's org and commit. Nobody mints a key above their own role."""
    principal.require(role)
    issued = await issue_key(session, principal.org_id, name=name, role=role)
    await session.commit()
    return issued


async def revoke_key(session: AsyncSession, principal: Principal, key_id: int) -> ApiKey:
    """Revoke a key of the caller's org and commit; ``NotFound`` for other orgs' keys."""
    repo = ApiKeyRepository(session, principal.org_id)
    target = await repo.get(key_id)
    principal.require(Role(target.role))
    row = await repo.revoke(key_id)
    await session.commit()
    return row
