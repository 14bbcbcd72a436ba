"""``/api/v1/audit``: the org's audit log, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from cloud import audit
from cloud.api.deps import CanReadAudit, SessionDep
from cloud.api.schemas import AuditEntryPublic, AuditPage
from cloud.auth.principal import ActorType
from cloud.errors import InvalidParameter
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.audit import AuditFilter

router = APIRouter(prefix="/audit", tags=["audit"])

Text = Annotated[str | None, Query(max_length=200)]


@router.get("", response_model=AuditPage)
async def query_audit(
    session: SessionDep,
    principal: CanReadAudit,
    actor_type: ActorType | None = None,
    actor_id: Text = None,
    action: Annotated[str | None, Query(max_length=64, examples=["device.update"])] = None,
    resource_type: Text = None,
    resource_id: Text = None,
    since: Annotated[datetime | None, Query(description="ISO-8601, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO-8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> AuditPage:
    """Who changed what and when, with the state before and after."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidParameter(f"{name} needs a UTC offset, e.g. 'Z'", field=name)
    before = None
    if cursor:
        at, entry_id = decode_cursor(cursor, str, int)
        before = (datetime.fromisoformat(at), entry_id)
    where = AuditFilter(
        actor_type=actor_type.value if actor_type else None, actor_id=actor_id, action=action,
        resource_type=resource_type, resource_id=resource_id, since=since, until=until,
        before=before,
    )
    rows = await audit.query(session, principal.org_id, where, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEntryPublic.model_validate(row) for row in rows],
        next=encode_cursor(rows[-1].at.isoformat(), rows[-1].id) if more else None,
    )
