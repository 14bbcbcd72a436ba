"""Device rows: gateways and their field devices.

:class:`DeviceRepository` serves API callers and scopes every query by their org. The
ingest path addresses gateways by topic name, which is global (:func:`find_gateway`), and
from then on works inside that gateway's org.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import (
    ColumnElement,
    Select,
    cast,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from cloud.errors import AlreadyExists, NotFound
from cloud.store.dialect import upsert_insert
from cloud.store.models import Cohort, Device, DeviceKind, Latest, Point, Product, utcnow

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


class DeviceView(NamedTuple):
    """A device with the names of what it refers to (the public view needs them)."""

    device: Device
    parent: str | None
    product: str | None
    cohort: str | None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Conditions of a device listing; ``None`` (or no labels) means any. ``labels``: the
    device has every one of them. ``online=False`` also matches never-reported devices."""

    kind: DeviceKind | None = None
    parent: str | None = None
    product_id: int | None = None
    cohort_id: int | None = None
    labels: tuple[str, ...] = ()
    online: bool | None = None


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

    def _select_views(self) -> Select[Device, str, str, str]:
        return (
            select(Device, Parent.name, Product.name, Cohort.name)
            .outerjoin(Parent, Device.parent_id == Parent.id)
            .outerjoin(Product, Device.product_id == Product.id)
            .outerjoin(Cohort, Device.cohort_id == Cohort.id)
            .where(Device.org_id == self.org_id)
        )

    async def get(self, name: str) -> DeviceWithParent:
        """The device and its parent's name; :class:`NotFound` if absent or another org's."""
        row = (await self.session.execute(self._select().where(Device.name == name))).first()
        if row is None:
            raise NotFound(f"device {name!r} not found")
        return row[0], row[1]

    async def view(self, name: str) -> DeviceView:
        """The device with its parent, product and cohort names; :class:`NotFound` if
        absent or another org's."""
        stmt = self._select_views().where(Device.name == name)
        row = (await self.session.execute(stmt)).first()
        if row is None:
            raise NotFound(f"device {name!r} not found")
        return DeviceView(row[0], row[1], row[2], row[3])

    async def views(self, names: Iterable[str]) -> dict[str, DeviceView]:
        """The org's devices among ``names`` (missing ones are left out)."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, DeviceView] = {}
        for start in range(0, len(wanted), 500):  # keep the IN list of one query bounded
            stmt = self._select_views().where(Device.name.in_(wanted[start : start + 500]))
            for row in (await self.session.execute(stmt)).all():
                found[row[0].name] = DeviceView(row[0], row[1], row[2], row[3])
        return found

    async def list_views(
        self, where: DeviceFilter, after: str | None = None, limit: int = 100
    ) -> list[DeviceView]:
        """Devices matching ``where`` ordered by name, keyset-paginated by ``after``."""
        stmt = self._select_views()
        if where.kind is not None:
            stmt = stmt.where(Device.kind == where.kind.value)
        if where.parent is not None:
            stmt = stmt.where(Parent.name == where.parent)
        if where.product_id is not None:
            stmt = stmt.where(Device.product_id == where.product_id)
        if where.cohort_id is not None:
            stmt = stmt.where(Device.cohort_id == where.cohort_id)
        for label in where.labels:
            stmt = stmt.where(self._has_label(label))
        if where.online is True:
            stmt = stmt.where(Device.online.is_(True))
        elif where.online is False:
            stmt = stmt.where(or_(Device.online.is_(False), Device.online.is_(None)))
        if after is not None:
            stmt = stmt.where(Device.name > after)
        rows = (await self.session.execute(stmt.order_by(Device.name).limit(limit))).all()
        return [DeviceView(row[0], row[1], row[2], row[3]) for row in rows]

    def _has_label(self, label: str) -> ColumnElement[bool]:
        # ``labels`` is a plain JSON array (JSON, not JSONB, on PostgreSQL too)
        if self.session.get_bind().dialect.name == "postgresql":
            return cast(Device.labels, JSONB).contains([label])
        each = func.json_each(Device.labels).table_valued("value")
        return exists(select(literal(1)).select_from(each).where(each.c.value == label))

    async def create(
        self,
        name: str,
        *,
        kind: DeviceKind = DeviceKind.GATEWAY,
        parent_id: int | None = None,
        product_id: int | None = None,
        cohort_id: int | None = None,
        labels: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Device:
        """Register a device (flushed). Raises :class:`AlreadyExists` when the name is taken
        in this org or, for a gateway, in any org (topic names are global)."""
        taken = select(Device.org_id).where(Device.name == name)
        if kind is DeviceKind.GATEWAY:
            taken = taken.where(
                (Device.kind == DeviceKind.GATEWAY.value) | (Device.org_id == self.org_id)
            )
        else:
            taken = taken.where(Device.org_id == self.org_id)
        if (await self.session.execute(taken)).first() is not None:
            raise AlreadyExists(f"a device named {name!r} is already registered")
        now = utcnow()
        device = Device(
            org_id=self.org_id, name=name, kind=kind.value, parent_id=parent_id,
            product_id=product_id, cohort_id=cohort_id, labels=list(labels),
            attributes=dict(attributes or {}), description=description,
            created_at=now, updated_at=now,
        )
        self.session.add(device)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent registration won the race
            raise AlreadyExists(f"a device named {name!r} is already registered") from exc
        return device

    async def create_gateway(self, name: str) -> Device:
        """Register a gateway. Raises :class:`AlreadyExists` when the name is taken, in this
        org or another (topic names are global)."""
        return await self.create(name, kind=DeviceKind.GATEWAY)

    async def update(self, device: Device, values: Mapping[str, Any]) -> None:
        """Write ``values`` (column name → value) to the device and stamp ``updated_at``."""
        for column, value in values.items():
            setattr(device, column, value)
        device.updated_at = utcnow()
        await self.session.flush()

    async def children(self, device: Device) -> list[str]:
        """Names of the device's field devices (none for a field device)."""
        stmt = select(Device.name).where(
            Device.org_id == self.org_id, Device.parent_id == device.id
        ).order_by(Device.name)
        return list((await self.session.execute(stmt)).scalars())

    async def delete(self, device: Device) -> None:
        """Delete the device, its field devices (foreign key cascade; certificates and
        tokens likewise) and their telemetry (points and latest values carry no foreign
        key, so they are deleted here)."""
        ids = select(Device.id).where(
            Device.org_id == self.org_id,
            (Device.id == device.id) | (Device.parent_id == device.id),
        )
        await self.session.execute(
            delete(Latest).where(Latest.org_id == self.org_id, Latest.device_id.in_(ids))
        )
        if device.kind == DeviceKind.GATEWAY.value:
            points = delete(Point).where(Point.gateway_id == device.id)
        else:
            points = delete(Point).where(Point.device_id == device.id)
        await self.session.execute(points.where(Point.org_id == self.org_id))
        await self.session.execute(
            delete(Device).where(Device.org_id == self.org_id, Device.id == device.id)
        )

    async def list(
        self,
        *,
        kind: DeviceKind | None = None,
        parent: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[DeviceWithParent]:
        """Devices ordered by name, keyset-paginated by ``after`` (a name)."""
        views = await self.list_views(DeviceFilter(kind=kind, parent=parent), after, limit)
        return [(view.device, view.parent) for view in views]


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
