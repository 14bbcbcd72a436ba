"""Device queries and registration for the API (the org scoping is the repository's)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.api.schemas import DeviceList, DevicePublic
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.devices import DeviceRepository
from cloud.store.models import Device, DeviceKind


def to_public(device: Device, parent: str | None) -> DevicePublic:
    return DevicePublic(
        name=device.name,
        kind=DeviceKind(device.kind),
        parent=parent,
        online=device.online,
        status=device.status,
        last_seen_at=device.last_seen_at,
        created_at=device.created_at,
    )


async def list_devices(
    session: AsyncSession,
    org_id: int,
    *,
    kind: DeviceKind | None,
    parent: str | None,
    limit: int,
    cursor: str | None,
) -> DeviceList:
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows = await DeviceRepository(session, org_id).list(
        kind=kind, parent=parent, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeviceList(
        items=[to_public(device, parent_name) for device, parent_name in rows],
        next=encode_cursor(rows[-1][0].name) if more else None,
    )


async def get_device(session: AsyncSession, org_id: int, name: str) -> DevicePublic:
    return to_public(*await DeviceRepository(session, org_id).get(name))


async def register_gateway(session: AsyncSession, org_id: int, name: str) -> DevicePublic:
    """Register a gateway and commit; ``AlreadyExists`` if the name is taken anywhere."""
    device = await DeviceRepository(session, org_id).create_gateway(name)
    await session.commit()
    return to_public(device, None)
