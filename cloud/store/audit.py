"""Audit log rows of one org: insert and filtered, keyset-paginated reads (newest first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.store.models import AuditEntry, utcnow


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Conditions of an audit query; ``None`` means any. ``before`` is a keyset position
    ``(at, id)``: entries strictly older than it."""

    actor_type: str | None = None
    actor_id: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, int] | None = None


class AuditRepository:
    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, **fields: Any) -> AuditEntry:
        row = AuditEntry(org_id=self.org_id, at=utcnow(), **fields)
        self.session.add(row)
        await self.session.flush()
        return row

    async def list(self, where: AuditFilter, *, limit: int) -> list[AuditEntry]:
        stmt = select(AuditEntry).where(AuditEntry.org_id == self.org_id)
        for column, value in (
            (AuditEntry.actor_type, where.actor_type),
            (AuditEntry.actor_id, where.actor_id),
            (AuditEntry.action, where.action),
            (AuditEntry.resource_type, where.resource_type),
            (AuditEntry.resource_id, where.resource_id),
        ):
            if value is not None:
                stmt = stmt.where(column == value)
        if where.since is not None:
            stmt = stmt.where(AuditEntry.at >= where.since)
        if where.until is not None:
            stmt = stmt.where(AuditEntry.at < where.until)
        if where.before is not None:
            stmt = stmt.where(tuple_(AuditEntry.at, AuditEntry.id) < where.before)
        stmt = stmt.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
        return list((await self.session.execute(stmt)).scalars())
