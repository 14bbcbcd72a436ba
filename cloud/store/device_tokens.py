"""Device token rows: scoped by org, except the prefix lookup that authenticates a
device (the token itself says nothing about its org)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import NotFound
from cloud.store.models import Device, DeviceToken, utcnow


async def find_token_by_prefix(
    session: AsyncSession, prefix: str
) -> tuple[DeviceToken, Device] | None:
    """The token with this lookup prefix and its device, any org (authentication)."""
    stmt = (
        select(DeviceToken, Device)
        .join(Device, Device.id == DeviceToken.device_id)
        .where(DeviceToken.prefix == prefix)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def touch_token(session: AsyncSession, token_id: int, when: datetime) -> None:
    await session.execute(
        update(DeviceToken).where(DeviceToken.id == token_id).values(last_used_at=when)
    )


class DeviceTokenRepository:
    """Tokens of one org's devices."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, **fields: Any) -> DeviceToken:
        row = DeviceToken(org_id=self.org_id, **fields)
        self.session.add(row)
        await self.session.flush()
        return row

    async def list(self, device_id: int) -> list[DeviceToken]:
        stmt = (
            select(DeviceToken)
            .where(DeviceToken.org_id == self.org_id, DeviceToken.device_id == device_id)
            .order_by(DeviceToken.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, device_id: int, token_id: int) -> DeviceToken:
        stmt = select(DeviceToken).where(
            DeviceToken.org_id == self.org_id,
            DeviceToken.device_id == device_id,
            DeviceToken.id == token_id,
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"device token {token_id} not found")
        return row

    async def revoke_all(self, device_id: int) -> int:
        """Revoke every live token of the device; returns how many."""
        result = await self.session.execute(
            update(DeviceToken)
            .where(
                DeviceToken.org_id == self.org_id,
                DeviceToken.device_id == device_id,
                DeviceToken.revoked_at.is_(None),
            )
            .values(revoked_at=utcnow())
        )
        return int(getattr(result, "rowcount", 0) or 0)
