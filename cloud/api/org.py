"""``/api/v1/org``: the caller's org."""

from __future__ import annotations

from fastapi import APIRouter

from cloud import orgs
from cloud.api.deps import CanManageOrg, CanRead, SessionDep
from cloud.api.schemas import OrgPublic, OrgUpdate

router = APIRouter(prefix="/org", tags=["org"])


@router.get("", response_model=OrgPublic)
async def read_org(session: SessionDep, principal: CanRead) -> OrgPublic:
    return await orgs.read_org(session, principal)


@router.patch("", response_model=OrgPublic)
async def update_org(body: OrgUpdate, session: SessionDep, principal: CanManageOrg) -> OrgPublic:
    return await orgs.update_org(session, principal, body)
