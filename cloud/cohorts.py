"""Cohorts: named groups of devices of one product, for targeting (OTA rollouts, alarms).

Reads take the org id; mutations take the acting principal, are audited in their own
transaction and commit. The org scoping is the repositories'.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas import CohortCreate, CohortList, CohortPublic, CohortUpdate
from cloud.auth.principal import AuditActor
from cloud.errors import Conflict, InvalidParameter
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.models import Cohort, Product
from cloud.store.products import CohortRepository, ProductRepository


def to_public(row: Cohort, product: str) -> CohortPublic:
    return CohortPublic(
        name=row.name,
        product=product,
        description=row.description,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def _product(session: AsyncSession, org_id: int, name: str, *, field: str) -> Product:
    """The org's product called ``name``; :class:`InvalidParameter` naming ``field``."""
    row = await ProductRepository(session, org_id).find(name)
    if row is None:
        raise InvalidParameter(f"{field}: no product named {name!r}", field=field)
    return row


async def list_cohorts(
    session: AsyncSession, org_id: int, *, product: str | None, limit: int, cursor: str | None
) -> CohortList:
    """A page of cohorts by name, optionally of one product (an unknown product is
    :class:`InvalidParameter` naming ``product``)."""
    after = decode_cursor(cursor, str)[0] if cursor else None
    product_id = None
    if product is not None:
        product_id = (await _product(session, org_id, product, field="product")).id
    rows = await CohortRepository(session, org_id).list(
        product_id=product_id, after=after, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return CohortList(
        items=[to_public(row, product_name) for row, product_name in rows],
        next=encode_cursor(rows[-1][0].name) if more else None,
    )


async def get_cohort(session: AsyncSession, org_id: int, name: str) -> CohortPublic:
    return to_public(*await CohortRepository(session, org_id).get(name))


async def create_cohort(
    session: AsyncSession, actor: AuditActor, body: CohortCreate
) -> CohortPublic:
    """Create and commit. :class:`InvalidParameter` naming ``product`` when the org has no
    such product; :class:`AlreadyExists` when the name is taken."""
    product = await _product(session, actor.org_id, body.product, field="product")
    row = await CohortRepository(session, actor.org_id).add(
        name=body.name, product=product, description=body.description
    )
    created = to_public(row, product.name)
    await audit.record(session, actor, "cohort.create", "cohort", row.name, after=created)
    await session.commit()
    return created


async def update_cohort(
    session: AsyncSession, actor: AuditActor, name: str, body: CohortUpdate
) -> CohortPublic:
    """Apply the fields sent and commit; nothing is written when they change nothing.
    Changing the product while the cohort has devices is a :class:`Conflict` (their
    product would no longer match their cohort's)."""
    repo = CohortRepository(session, actor.org_id)
    row, product_name = await repo.get(name)
    before = to_public(row, product_name)
    sent = body.model_fields_set
    changed = False
    if body.product is not None and body.product != product_name:
        product = await _product(session, actor.org_id, body.product, field="product")
        devices = await repo.device_count(row.id)
        if devices:
            raise Conflict(
                f"cohort {name!r} has {devices} device(s) of product {product_name!r}; "
                "move them out of the cohort before changing its product",
                devices=devices,
            )
        row.product_id, product_name, changed = product.id, product.name, True
    for field in ("name", "description"):
        if field in sent and getattr(body, field) != getattr(row, field):
            setattr(row, field, getattr(body, field))
            changed = True
    if not changed:
        return before
    await repo.save(row, renamed=row.name != name)
    after = to_public(row, product_name)
    await audit.record(
        session, actor, "cohort.update", "cohort", row.name, before=before, after=after
    )
    await session.commit()
    return after


async def delete_cohort(session: AsyncSession, actor: AuditActor, name: str) -> None:
    """Delete and commit; the cohort's devices stay, detached from any cohort (their
    product is kept). The audit entry's ``before`` counts the detached devices."""
    repo = CohortRepository(session, actor.org_id)
    row, product_name = await repo.get(name)
    before = to_public(row, product_name).model_dump(mode="json")
    detached = await repo.delete(row)
    await audit.record(
        session, actor, "cohort.delete", "cohort", name,
        before={**before, "detached_devices": detached},
    )
    await session.commit()
