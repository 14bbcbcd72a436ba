"""Products (device types) of an org: what cohorts, OTA releases and alarm rules target.

Reads take the org id; mutations take the acting principal, are audited in their own
transaction and commit. The org scoping is the repository's.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas import ProductCreate, ProductList, ProductPublic, ProductUpdate
from cloud.auth.principal import AuditActor
from cloud.errors import Conflict
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.models import Product
from cloud.store.products import ProductRepository


def to_public(row: Product) -> ProductPublic:
    return ProductPublic.model_validate(row)


async def list_products(
    session: AsyncSession, org_id: int, *, limit: int, cursor: str | None
) -> ProductList:
    after = decode_cursor(cursor, str)[0] if cursor else None
    rows = await ProductRepository(session, org_id).list(after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return ProductList(
        items=[to_public(row) for row in rows],
        next=encode_cursor(rows[-1].name) if more else None,
    )


async def get_product(session: AsyncSession, org_id: int, name: str) -> ProductPublic:
    return to_public(await ProductRepository(session, org_id).get(name))


async def create_product(
    session: AsyncSession, actor: AuditActor, body: ProductCreate
) -> ProductPublic:
    """Create and commit; :class:`AlreadyExists` when the org has a product of that name."""
    row = await ProductRepository(session, actor.org_id).add(
        name=body.name, description=body.description, attributes=body.attributes
    )
    created = to_public(row)
    await audit.record(session, actor, "product.create", "product", row.name, after=created)
    await session.commit()
    return created


async def update_product(
    session: AsyncSession, actor: AuditActor, name: str, body: ProductUpdate
) -> ProductPublic:
    """Apply the fields sent (a rename included) and commit; nothing is written when they
    change nothing. :class:`NotFound`, :class:`AlreadyExists` (rename onto a taken name)."""
    repo = ProductRepository(session, actor.org_id)
    row = await repo.get(name)
    before = to_public(row)
    changes = {
        field: getattr(body, field)
        for field in body.model_fields_set
        if getattr(body, field) != getattr(row, field)
    }
    if not changes:
        return before
    for field, value in changes.items():
        setattr(row, field, value)
    await repo.save(row, renamed="name" in changes)
    after = to_public(row)
    await audit.record(
        session, actor, "product.update", "product", row.name, before=before, after=after
    )
    await session.commit()
    return after


async def delete_product(session: AsyncSession, actor: AuditActor, name: str) -> None:
    """Delete and commit. :class:`Conflict` (naming how many) while cohorts or devices
    still refer to the product: they must be moved or deleted first."""
    repo = ProductRepository(session, actor.org_id)
    row = await repo.get(name)
    cohorts, devices = await repo.usage(row.id)
    if cohorts or devices:
        raise Conflict(
            f"product {name!r} still has {cohorts} cohort(s) and {devices} device(s); "
            "delete the cohorts and move the devices to another product first",
            cohorts=cohorts,
            devices=devices,
        )
    before = to_public(row)
    await repo.delete(row)
    await audit.record(session, actor, "product.delete", "product", name, before=before)
    await session.commit()
