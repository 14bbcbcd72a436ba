"""The audit log: every mutation records who did what to which resource, with before/after.

Service functions call :func:`record` inside the transaction of the change itself, so an
entry exists exactly when the change was committed. Snapshots hold public fields only;
pass the Public model (or a dict) of the resource, never a row with secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.auth.principal import AuditActor
from cloud.store.audit import AuditFilter, AuditRepository
from cloud.store.models import AuditEntry

Snapshot = BaseModel | Mapping[str, Any] | None


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, datetime):
            out[key] = item.isoformat()
        elif isinstance(item, BaseModel):
            out[key] = item.model_dump(mode="json")
        elif isinstance(item, Mapping):
            out[key] = _jsonable(item)
        else:
            out[key] = item
    return out


def to_json(value: Snapshot) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return _jsonable(value)


async def record(
    session: AsyncSession,
    actor: AuditActor,
    action: str,
    resource_type: str,
    resource_id: str | int,
    *,
    before: Snapshot = None,
    after: Snapshot = None,
) -> AuditEntry:
    """Add an entry to the actor's org (flushed, not committed: the caller commits the
    change and its entry together). ``action`` is ``"<resource>.<verb>"``, e.g.
    ``"device.update"``."""
    return await AuditRepository(session, actor.org_id).add(
        actor_type=actor.actor_type.value,
        actor_id=actor.actor_id,
        actor_name=actor.actor_name,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id),
        before=to_json(before),
        after=to_json(after),
    )


async def query(
    session: AsyncSession, org_id: int, where: AuditFilter, *, limit: int
) -> list[AuditEntry]:
    return await AuditRepository(session, org_id).list(where, limit=limit)
