"""Device rows: gateways and their field devices.

:class:`DeviceRepository` serves API callers and scopes every query by their org. The
ingest path addresses gateways by topic name, which is global (:func:`find_gateway`), and
from then on works inside that gateway's org.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cloud.errors import AlreadyExists, NotFound
from cloud.store.dialect import upsert_insert
from cloud.store.models import Device, DeviceKind, utcnow

Parent = aliased(Device, name="parent")


class GatewayRef(Protocol):
    """What the ingest helpers need of a gateway: a ``Device`` row or a cached copy."""

    @property
    def id(self) -> int: ...

    @property
    def org_id(self) -> int: ...

    @property
    def name(self) -> str: ...

DeviceWithParent = tuple[Device, str | None]


def field_device_name(gateway: str, device: str) -> str:
    """Cloud name of a field device: ``"{gateway}.{device}"`` (names contain no dots)."""
    return f"{gateway}.{device}"


class DeviceRepository:
    """Devices of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    def _select(self) -> Select[Device, str]:
        return (
            select(Device, Parent.name)
            .outerjoin(Parent, Device.parent_id == Parent.id)
            .where(Device.org_id == self.org_id)
        )

    async def get(self, name: str) -> DeviceWithParent:
        """The device and its parent's name; :class:`NotFound` if absent or another org's."""
        row = (await self.session.execute(self._select().where(Device.name == name))).first()
        if row is None:
            raise NotFound(f"device {name!r} not found")
        return row[0], row[1]

    async def list(
        self,
        *,
        kind: DeviceKind | None = None,
        parent: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeviceWithParent]:
        """Devices ordered by name, keyset-paginated by ``after`` (a name)."""
        stmt = self._select()
        if kind is not None:
            stmt = stmt.where(Device.kind == kind.value)
        if parent is not None:
            stmt = stmt.where(Parent.name == parent)
        if after is not None:
            stmt = stmt.where(Device.name > after)
        rows = (await self.session.execute(stmt.order_by(Device.name).limit(limit))).all()
        return [(row[0], row[1]) for row in rows]

    async def create_gateway(self, name: str) -> Device:
        """Register a gateway. Raises :class:`AlreadyExists` when the name is taken, in this
        org or another (topic names are global)."""
        taken = await self.session.execute(
            select(Device.org_id).where(
                (Device.name == name)
                & ((Device.kind == DeviceKind.GATEWAY.value) | (Device.org_id == self.org_id))
            )
        )
        if taken.first() is not None:
            raise AlreadyExists(f"a device named {name!r} is already registered")
        device = Device(org_id=self.org_id, name=name, kind=DeviceKind.GATEWAY.value)
        self.session.add(device)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent registration won the race
            raise AlreadyExists(f"a device named {name!r} is already registered") from exc
        return device


async def find_gateway(session: AsyncSession, name: str) -> Device | None:
    """The gateway called ``name`` in any org (ingest only: the topic names it)."""
    stmt = select(Device).where(Device.name == name, Device.kind == DeviceKind.GATEWAY.value)
    return (await session.execute(stmt)).scalar_one_or_none()


async def ensure_field_devices(
    session: AsyncSession, gateway: GatewayRef, devices: Iterable[str]
) -> dict[str, int]:
    """Ids of the gateway's field devices by short name, creating missing ones as children.

    Idempotent and safe against concurrent creators (``ON CONFLICT DO NOTHING``).
    """
    names = {field_device_name(gateway.name, d): d for d in set(devices)}
    if not names:
        return {}
    now = utcnow()
    insert = upsert_insert(session, Device.__table__).on_conflict_do_nothing(
        index_elements=["org_id", "name"]
    )
    await session.execute(
        insert,
        [
            {
                "org_id": gateway.org_id,
                "name": full,
                "kind": DeviceKind.FIELD.value,
                "parent_id": gateway.id,
                "created_at": now,
            }
            for full in names
        ],
    )
    rows = await session.execute(
        select(Device.name, Device.id).where(
            Device.org_id == gateway.org_id, Device.name.in_(list(names))
        )
    )
    return {names[name]: device_id for name, device_id in rows}


async def set_gateway_status(
    session: AsyncSession,
    gateway: GatewayRef,
    *,
    online: bool,
    status: Mapping[str, Any] | None,
    seen_at: datetime,
) -> None:
    values: dict[str, Any] = {"online": online, "last_seen_at": seen_at}
    if status is not None:
        values["status"] = dict(status)
    await session.execute(update(Device).where(Device.id == gateway.id).values(**values))


async def set_field_devices_online(
    session: AsyncSession, gateway: GatewayRef, online: Mapping[str, bool], seen_at: datetime
) -> None:
    """Set the online flag of the gateway's field devices (creating unknown ones)."""
    ids = await ensure_field_devices(session, gateway, online)
    for short, flag in online.items():
        await session.execute(
            update(Device).where(Device.id == ids[short]).values(online=flag, last_seen_at=seen_at)
        )


async def touch_gateway(session: AsyncSession, gateway_id: int, seen_at: datetime) -> None:
    await session.execute(
        update(Device).where(Device.id == gateway_id).values(last_seen_at=seen_at)
    )
