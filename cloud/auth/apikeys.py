"""API keys: ``fgk_`` secrets (see :mod:`cloud.auth.secrets`) scoped to one org and one
role, with optional expiry and per-key rate limit; shown once, stored hashed, revocable,
``last_used_at`` kept (coarsely)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.auth import secrets
from cloud.auth.principal import ActorType, Principal
from cloud.errors import InvalidParameter, Unauthorized
from cloud.store.api_keys import ApiKeyRepository, find_key_by_prefix, touch_key
from cloud.store.models import ApiKey, Role, utcnow

KEY_PREFIX = "fgk_"
PREFIX_LENGTH = secrets.LOOKUP_LENGTH
LAST_USED_GRANULARITY = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per key: not a write per request."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key; ``secret`` is the only copy of the key in clear."""

    row: ApiKey
    secret: str


def generate_key() -> str:
    return secrets.generate(KEY_PREFIX)


hash_key = secrets.digest


def principal_of(row: ApiKey) -> Principal:
    return Principal(
        org_id=row.org_id,
        role=Role(row.role),
        actor_type=ActorType.API_KEY,
        actor_id=str(row.id),
        actor_name=f"api key {row.name!r} ({row.prefix})",
        rate_limit=row.rate_limit,
    )


def public_state(row: ApiKey) -> dict[str, object]:
    """The audit snapshot of a key (never the hash)."""
    return {
        "id": row.id, "name": row.name, "prefix": row.prefix, "role": row.role,
        "expires_at": row.expires_at, "rate_limit": row.rate_limit,
        "revoked_at": row.revoked_at,
    }


async def issue_key(
    session: AsyncSession,
    org_id: int,
    *,
    name: str,
    role: Role = Role.VIEWER,
    expires_at: datetime | None = None,
    rate_limit: float | None = None,
    created_by: str | None = None,
) -> IssuedKey:
    """Create a key for the org (flushed); the caller shows ``secret`` once and commits."""
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidParameter("expires_at must be in the future", field="expires_at")
    key = generate_key()
    row = await ApiKeyRepository(session, org_id).add(
        name=name, prefix=secrets.lookup_prefix(key), key_hash=hash_key(key), role=role.value,
        expires_at=expires_at, rate_limit=rate_limit, created_by=created_by,
    )
    return IssuedKey(row=row, secret=key)


async def authenticate(session: AsyncSession, key: str | None) -> Principal:
    """The principal of a presented key; raises :class:`Unauthorized` (missing, malformed,
    unknown, expired or revoked key). Updates ``last_used_at`` (coarsely) in the caller's
    session."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer fgk_...'")
    if not secrets.well_formed(key, KEY_PREFIX):
        raise Unauthorized("malformed API key: expected 'fgk_' followed by the secret")
    row = await find_key_by_prefix(session, secrets.lookup_prefix(key))
    if row is None or not secrets.matches(key, row.key_hash):
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise Unauthorized("the API key was revoked")
    now = utcnow()
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("the API key has expired")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_GRANULARITY:
        await touch_key(session, row.id, now)
    return principal_of(row)


async def list_keys(session: AsyncSession, principal: Principal) -> list[ApiKey]:
    return await ApiKeyRepository(session, principal.org_id).list()


async def get_key(session: AsyncSession, principal: Principal, key_id: int) -> ApiKey:
    return await ApiKeyRepository(session, principal.org_id).get(key_id)


async def create_key(
    session: AsyncSession,
    principal: Principal,
    *,
    name: str,
    role: Role,
    expires_at: datetime | None = None,
    rate_limit: float | None = None,
) -> IssuedKey:
    """Mint a key in the caller's org and commit. Nobody mints a key above their own role."""
    principal.require(role)
    issued = await issue_key(
        session, principal.org_id, name=name, role=role, expires_at=expires_at,
        rate_limit=rate_limit, created_by=principal.actor_name,
    )
    await audit.record(
        session, principal, "api_key.create", "api_key", issued.row.id,
        after=public_state(issued.row),
    )
    await session.commit()
    return issued


async def revoke_key(session: AsyncSession, principal: Principal, key_id: int) -> ApiKey:
    """Revoke a key of the caller's org and commit; ``NotFound`` for other orgs' keys."""
    repo = ApiKeyRepository(session, principal.org_id)
    target = await repo.get(key_id)
    principal.require(Role(target.role))
    before = public_state(target)
    if target.revoked_at is None:
        row = await repo.revoke(key_id)
        await audit.record(
            session, principal, "api_key.revoke", "api_key", key_id,
            before=before, after=public_state(row),
        )
        await session.commit()
        return row
    return target
