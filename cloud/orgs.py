"""The caller's own org: read and rename (audited)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas.access import OrgPublic, OrgUpdate
from cloud.auth.principal import Principal
from cloud.errors import AlreadyExists
from cloud.store.orgs import get_org


async def read_org(session: AsyncSession, principal: Principal) -> OrgPublic:
    return OrgPublic.model_validate(await get_org(session, principal.org_id))


async def update_org(session: AsyncSession, principal: Principal, body: OrgUpdate) -> OrgPublic:
    org = await get_org(session, principal.org_id)
    before = OrgPublic.model_validate(org)
    if body.name is not None:
        org.name = body.name
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise AlreadyExists(f"the org name {body.name!r} is taken", field="name") from exc
    after = OrgPublic.model_validate(org)
    await audit.record(session, principal, "org.update", "org", org.id, before=before, after=after)
    await session.commit()
    return after
