"""The device registry: listing, registration, changes and deletion of an org's gateways
and field devices. The org scoping is the repositories'; every mutation is audited in its
own transaction and committed here (the bulk import reuses the uncommitted steps).

A device may belong to a product and, within it, to one of that product's cohorts; the
service keeps that pair consistent (422 naming the field otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas import DeviceCreate, DeviceList, DevicePublic, DeviceUpdate
from cloud.auth.principal import AuditActor
from cloud.errors import InvalidParameter
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.devices import DeviceFilter, DeviceRepository, DeviceView
from cloud.store.models import DeviceKind
from cloud.store.products import CohortRepository, ProductRepository

UPDATABLE = ("labels", "attributes", "description", "product", "cohort")
"""Fields a change (PATCH, import upsert) may carry."""


def to_public(view: DeviceView) -> DevicePublic:
    device = view.device
    return DevicePublic(
        name=device.name,
        kind=DeviceKind(device.kind),
        parent=view.parent,
        product=view.product,
        cohort=view.cohort,
        labels=list(device.labels or []),
        attributes=dict(device.attributes or {}),
        description=device.description or "",
        online=device.online,
        status=device.status,
        last_seen_at=device.last_seen_at,
        revoked_at=device.revoked_at,
        created_at=device.created_at,
        updated_at=device.updated_at,
    )


@dataclass(frozen=True, slots=True)
class _CohortRef:
    id: int
    product_id: int
    product: str


class Placements:
    """Resolves product and cohort names of one org to ids, remembering the answers (an
    import names the same few products and cohorts thousands of times). Unknown names
    are :class:`InvalidParameter` naming the field."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self._products = ProductRepository(session, org_id)
        self._cohorts = CohortRepository(session, org_id)
        self._product_ids: dict[str, int] = {}
        self._cohort_refs: dict[str, _CohortRef] = {}

    async def product_id(self, name: str, *, field: str = "product") -> int:
        if name not in self._product_ids:
            row = await self._products.find(name)
            if row is None:
                raise InvalidParameter(f"{field}: no product named {name!r}", field=field)
            self._product_ids[name] = row.id
        return self._product_ids[name]

    async def cohort(self, name: str, *, field: str = "cohort") -> _CohortRef:
        if name not in self._cohort_refs:
            found = await self._cohorts.find(name)
            if found is None:
                raise InvalidParameter(f"{field}: no cohort named {name!r}", field=field)
            row, product = found
            self._cohort_refs[name] = _CohortRef(row.id, row.product_id, product)
        return self._cohort_refs[name]

    async def resolve(
        self, product: str | None, cohort: str | None, *, blame: str = "cohort"
    ) -> tuple[int | None, int | None]:
        """(product id, cohort id) of a device placed in ``product``/``cohort``; the cohort
        must be one of the product's (else :class:`InvalidParameter` naming ``blame``)."""
        product_id = None if product is None else await self.product_id(product)
        if cohort is None:
            return product_id, None
        ref = await self.cohort(cohort)
        if product is None:
            raise InvalidParameter(
                f"{blame}: cohort {cohort!r} belongs to product {ref.product!r} and the device "
                f"has no product; set 'product' to {ref.product!r} as well",
                field=blame,
            )
        if ref.product_id != product_id:
            raise InvalidParameter(
                f"{blame}: cohort {cohort!r} belongs to product {ref.product!r}, "
                f"not to the device's product {product!r}",
                field=blame,
            )
        return product_id, ref.id


# -- reads ---------------------------------------------------------------------------------


async def list_devices(
    session: AsyncSession,
    org_id: int,
    *,
    kind: DeviceKind | None = None,
    parent: str | None = None,
    product: str | None = None,
    cohort: str | None = None,
    labels: tuple[str, ...] = (),
    online: bool | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> DeviceList:
    """A page of the org's devices by name. An unknown ``product``/``cohort`` filter is
    :class:`InvalidParameter` naming it (a typo should not look like an empty fleet)."""
    after = decode_cursor(cursor, str)[0] if cursor else None
    placements = Placements(session, org_id)
    where = DeviceFilter(
        kind=kind,
        parent=parent,
        product_id=None if product is None else await placements.product_id(product),
        cohort_id=None if cohort is None else (await placements.cohort(cohort)).id,
        labels=labels,
        online=online,
    )
    views = await DeviceRepository(session, org_id).list_views(where, after, limit + 1)
    more = len(views) > limit
    views = views[:limit]
    return DeviceList(
        items=[to_public(view) for view in views],
        next=encode_cursor(views[-1].device.name) if more else None,
    )


async def get_device(session: AsyncSession, org_id: int, name: str) -> DevicePublic:
    return to_public(await DeviceRepository(session, org_id).view(name))


# -- the steps (flushed and audited, not committed) ----------------------------------------


async def insert_device(
    session: AsyncSession,
    actor: AuditActor,
    spec: DeviceCreate,
    *,
    placements: Placements,
    parent_id: int | None,
    action: str = "device.create",
) -> DeviceView:
    """Add the device described by ``spec`` under the already resolved ``parent_id``.
    Raises :class:`AlreadyExists` and :class:`InvalidParameter` (product/cohort)."""
    product_id, cohort_id = await placements.resolve(spec.product, spec.cohort)
    device = await DeviceRepository(session, actor.org_id).create(
        spec.name,
        kind=spec.kind,
        parent_id=parent_id,
        product_id=product_id,
        cohort_id=cohort_id,
        labels=spec.labels,
        attributes=spec.attributes,
        description=spec.description,
    )
    view = DeviceView(device, spec.parent, spec.product, spec.cohort)
    await audit.record(session, actor, action, "device", device.name, after=to_public(view))
    return view


async def change_device(
    session: AsyncSession,
    actor: AuditActor,
    view: DeviceView,
    changes: Mapping[str, Any],
    *,
    placements: Placements,
    action: str = "device.update",
) -> DeviceView | None:
    """Apply ``changes`` (a subset of :data:`UPDATABLE`; ``product``/``cohort`` None
    clears) to the device. Returns the new view, or None when nothing changed (nothing is
    written or audited then). Raises :class:`InvalidParameter` naming the field."""
    device = view.device
    values: dict[str, Any] = {}
    for field in ("labels", "attributes", "description"):
        if field in changes:
            values[field] = changes[field]
    product = changes.get("product", view.product)
    cohort = changes.get("cohort", view.cohort)
    if "product" in changes or "cohort" in changes:
        if "cohort" not in changes and cohort is not None and product != view.product:
            raise InvalidParameter(
                f"product: the device is in cohort {cohort!r} of product {view.product!r}; "
                "send 'cohort' (another cohort of the new product, or null) as well",
                field="product",
            )
        values["product_id"], values["cohort_id"] = await placements.resolve(product, cohort)
    changed = {k: v for k, v in values.items() if getattr(device, k) != v}
    if not changed:
        return None
    before = to_public(view)
    await DeviceRepository(session, actor.org_id).update(device, changed)
    after = DeviceView(device, view.parent, product, cohort)
    await audit.record(
        session, actor, action, "device", device.name, before=before, after=to_public(after)
    )
    return after


async def parent_gateway_id(session: AsyncSession, org_id: int, spec: DeviceCreate) -> int | None:
    """The id of the gateway a field device is registered under (None for a gateway);
    :class:`InvalidParameter` naming ``parent`` unless it is a gateway of the org."""
    if spec.parent is None:
        return None
    views = await DeviceRepository(session, org_id).views([spec.parent])
    found = views.get(spec.parent)
    if found is None or found.device.kind != DeviceKind.GATEWAY.value:
        raise InvalidParameter(f"parent: no gateway named {spec.parent!r}", field="parent")
    return found.device.id


# -- mutations (committed) -----------------------------------------------------------------


async def register_device(
    session: AsyncSession, actor: AuditActor, spec: DeviceCreate
) -> DevicePublic:
    """Register a gateway (its name unique across orgs: the MQTT topic names it) or a field
    device under one of the org's gateways, and commit. Raises :class:`AlreadyExists`, and
    :class:`InvalidParameter` naming ``parent``, ``product`` or ``cohort``."""
    parent_id = await parent_gateway_id(session, actor.org_id, spec)
    view = await insert_device(
        session, actor, spec, placements=Placements(session, actor.org_id), parent_id=parent_id
    )
    await session.commit()
    return to_public(view)


async def update_device(
    session: AsyncSession, actor: AuditActor, name: str, body: DeviceUpdate
) -> DevicePublic:
    """Apply the fields sent in ``body`` and commit (nothing is written when they change
    nothing). :class:`NotFound` for a device of another org."""
    view = await DeviceRepository(session, actor.org_id).view(name)
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    changed = await change_device(
        session, actor, view, changes, placements=Placements(session, actor.org_id)
    )
    if changed is None:
        return to_public(view)
    await session.commit()
    return to_public(changed)


async def delete_device(session: AsyncSession, actor: AuditActor, name: str) -> None:
    """Delete a device of the org and commit: a gateway goes with its field devices; the
    telemetry, certificates and tokens of every deleted device go too. One audit entry,
    whose ``before`` lists the field devices deleted with it."""
    repo = DeviceRepository(session, actor.org_id)
    view = await repo.view(name)
    children = await repo.children(view.device)
    before = {**to_public(view).model_dump(mode="json"), "field_devices": children}
    await repo.delete(view.device)
    await audit.record(session, actor, "device.delete", "device", name, before=before)
    await session.commit()
