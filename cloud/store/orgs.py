"""Orgs: the tenants. Creation is an administrative act (CLI ``init``, bootstrap)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import AlreadyExists, NotFound
from cloud.store.models import Org


async def get_org_by_name(session: AsyncSession, name: str) -> Org | None:
    return (await session.execute(select(Org).where(Org.name == name))).scalar_one_or_none()


async def create_org(session: AsyncSession, name: str) -> Org:
    """Insert an org; raises :class:`AlreadyExists` when the name is taken."""
    if await get_org_by_name(session, name) is not None:
        raise AlreadyExists(f"org {name!r} already exists")
    org = Org(name=name)
    session.add(org)
    await session.flush()
    return org


async def get_org(session: AsyncSession, org_id: int) -> Org:
    """The org of an authenticated caller (it exists: keys and users cascade with it)."""
    org = await session.get(Org, org_id)
    if org is None:
        raise NotFound(f"org {org_id} not found")
    return org
