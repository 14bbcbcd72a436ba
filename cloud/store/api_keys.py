"""API key rows. Scoped by org, except :func:`find_key_by_prefix`, which is how a request
learns its org in the first place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import NotFound
from cloud.store.models import ApiKey, utcnow


async def find_key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    """The key row with this lookup prefix, any org (authentication only)."""
    stmt = select(ApiKey).where(ApiKey.prefix == prefix)
    return (await session.execute(stmt)).scalar_one_or_none()


async def touch_key(session: AsyncSession, key_id: int, when: datetime) -> None:
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))


class ApiKeyRepository:
    """API keys of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, **fields: Any) -> ApiKey:
        row = ApiKey(org_id=self.org_id, **fields)
        self.session.add(row)
        await self.session.flush()
        return row

    async def list(self) -> list[ApiKey]:
        stmt = select(ApiKey).where(ApiKey.org_id == self.org_id).order_by(ApiKey.id)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, key_id: int) -> ApiKey:
        stmt = select(ApiKey).where(ApiKey.org_id == self.org_id, ApiKey.id == key_id)
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"API key {key_id} not found")
        return row

    async def revoke(self, key_id: int) -> ApiKey:
        """Mark the key revoked (idempotent); raises :class:`NotFound` for another org's key."""
        row = await self.get(key_id)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            await self.session.flush()
        return row
