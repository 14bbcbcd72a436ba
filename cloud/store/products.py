"""Product and cohort rows of one org (every query is scoped by the org).

Names are unique per org and are how the API addresses both; an object of another org
is simply not found.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import AlreadyExists, Conflict, NotFound
from cloud.store.models import Cohort, Device, Product, utcnow


class ProductRepository:
    """Products of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def find(self, name: str) -> Product | None:
        stmt = select(Product).where(Product.org_id == self.org_id, Product.name == name)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get(self, name: str) -> Product:
        """The product; :class:`NotFound` if absent or another org's."""
        row = await self.find(name)
        if row is None:
            raise NotFound(f"product {name!r} not found")
        return row

    async def list(self, *, after: str | None = None, limit: int = 100) -> list[Product]:
        """Products ordered by name, keyset-paginated by ``after`` (a name)."""
        stmt = select(Product).where(Product.org_id == self.org_id)
        if after is not None:
            stmt = stmt.where(Product.name > after)
        stmt = stmt.order_by(Product.name).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def add(self, *, name: str, description: str, attributes: dict[str, Any]) -> Product:
        """Insert (flushed); :class:`AlreadyExists` when the name is taken in the org."""
        if await self.find(name) is not None:
            raise AlreadyExists(f"a product named {name!r} already exists")
        now = utcnow()
        row = Product(
            org_id=self.org_id, name=name, description=description, attributes=attributes,
            created_at=now, updated_at=now,
        )
        self.session.add(row)
        await _flush_unique(self.session, f"a product named {name!r} already exists")
        return row

    async def save(self, row: Product, *, renamed: bool) -> None:
        """Flush changes made to ``row``; a rename onto a taken name is AlreadyExists."""
        with self.session.no_autoflush:  # the pending rename would hit the unique index
            taken = renamed and await self._name_taken(row.name, row.id)
        if taken:
            raise AlreadyExists(f"a product named {row.name!r} already exists")
        row.updated_at = utcnow()
        await _flush_unique(self.session, f"a product named {row.name!r} already exists")

    async def _name_taken(self, name: str, own_id: int) -> bool:
        stmt = select(Product.id).where(
            Product.org_id == self.org_id, Product.name == name, Product.id != own_id
        )
        return (await self.session.execute(stmt)).first() is not None

    async def usage(self, product_id: int) -> tuple[int, int]:
        """(cohorts, devices) of the org that refer to the product."""
        cohorts = await self.session.scalar(
            select(func.count()).select_from(Cohort).where(
                Cohort.org_id == self.org_id, Cohort.product_id == product_id
            )
        )
        devices = await self.session.scalar(
            select(func.count()).select_from(Device).where(
                Device.org_id == self.org_id, Device.product_id == product_id
            )
        )
        return int(cohorts or 0), int(devices or 0)

    async def delete(self, row: Product) -> None:
        """Delete the product; :class:`Conflict` if a cohort or device still refers to it
        (the caller checks :meth:`usage` first; this catches a concurrent writer)."""
        try:
            await self.session.execute(
                delete(Product).where(Product.org_id == self.org_id, Product.id == row.id)
            )
        except IntegrityError as exc:
            raise Conflict(f"product {row.name!r} is still in use") from exc


CohortWithProduct = tuple[Cohort, str]


class CohortRepository:
    """Cohorts of one org, each with its product's name."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    def _select(self) -> Select[Cohort, str]:
        return (
            select(Cohort, Product.name)
            .join(Product, Cohort.product_id == Product.id)
            .where(Cohort.org_id == self.org_id)
        )

    async def find(self, name: str) -> CohortWithProduct | None:
        row = (await self.session.execute(self._select().where(Cohort.name == name))).first()
        return None if row is None else (row[0], row[1])

    async def get(self, name: str) -> CohortWithProduct:
        """The cohort and its product's name; :class:`NotFound` if absent or another org's."""
        found = await self.find(name)
        if found is None:
            raise NotFound(f"cohort {name!r} not found")
        return found

    async def list(
        self, *, product_id: int | None = None, after: str | None = None, limit: int = 100
    ) -> list[CohortWithProduct]:
        """Cohorts ordered by name, keyset-paginated by ``after`` (a name)."""
        stmt = self._select()
        if product_id is not None:
            stmt = stmt.where(Cohort.product_id == product_id)
        if after is not None:
            stmt = stmt.where(Cohort.name > after)
        rows = (await self.session.execute(stmt.order_by(Cohort.name).limit(limit))).all()
        return [(row[0], row[1]) for row in rows]

    async def add(self, *, name: str, product: Product, description: str) -> Cohort:
        """Insert (flushed); :class:`AlreadyExists` when the name is taken in the org."""
        if await self.find(name) is not None:
            raise AlreadyExists(f"a cohort named {name!r} already exists")
        now = utcnow()
        row = Cohort(
            org_id=self.org_id, product_id=product.id, name=name, description=description,
            created_at=now, updated_at=now,
        )
        self.session.add(row)
        await _flush_unique(self.session, f"a cohort named {name!r} already exists")
        return row

    async def save(self, row: Cohort, *, renamed: bool) -> None:
        """Flush changes made to ``row``; a rename onto a taken name is AlreadyExists."""
        if renamed:
            stmt = select(Cohort.id).where(
                Cohort.org_id == self.org_id, Cohort.name == row.name, Cohort.id != row.id
            )
            with self.session.no_autoflush:  # the pending rename would hit the unique index
                taken = (await self.session.execute(stmt)).first() is not None
            if taken:
                raise AlreadyExists(f"a cohort named {row.name!r} already exists")
        row.updated_at = utcnow()
        await _flush_unique(self.session, f"a cohort named {row.name!r} already exists")

    async def device_count(self, cohort_id: int) -> int:
        count = await self.session.scalar(
            select(func.count()).select_from(Device).where(
                Device.org_id == self.org_id, Device.cohort_id == cohort_id
            )
        )
        return int(count or 0)

    async def delete(self, row: Cohort) -> int:
        """Delete the cohort, detaching its devices first (so their ``updated_at`` moves);
        returns how many devices were detached."""
        detached = await self.session.execute(
            update(Device)
            .where(Device.org_id == self.org_id, Device.cohort_id == row.id)
            .values(cohort_id=None, updated_at=utcnow())
        )
        await self.session.execute(
            delete(Cohort).where(Cohort.org_id == self.org_id, Cohort.id == row.id)
        )
        return int(getattr(detached, "rowcount", 0) or 0)


async def _flush_unique(session: AsyncSession, message: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent writer took the name first
        raise AlreadyExists(message) from exc
