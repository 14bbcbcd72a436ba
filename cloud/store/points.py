"""Raw points and latest values.

Writes (:func:`insert_points`, :func:`upsert_latest`) are bulk Core statements called by
the ingest service inside its transaction; rows carry their ``org_id``. Reads go through
:class:`PointRepository`, scoped by the caller's org.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.store.dialect import upsert_insert
from cloud.store.models import Latest, Point

POINTS = Point.__table__
LATEST = Latest.__table__

POINT_COLUMNS = (
    "gateway_id", "seq", "org_id", "device_id", "tag", "ts", "kind", "num", "txt", "quality",
    "reason",
)
LATEST_COLUMNS = (
    "device_id", "tag", "org_id", "ts", "seq", "kind", "num", "txt", "quality", "reason",
)


async def insert_points(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int | None:
    """Insert raw points, skipping ``(gateway_id, seq)`` already stored (re-delivery).

    Returns the number of rows inserted when the driver reports it, else ``None``.
    """
    if not rows:
        return 0
    stmt = upsert_insert(session, POINTS).on_conflict_do_nothing(
        index_elements=["gateway_id", "seq"]
    )
    result = await session.execute(stmt, rows)
    if not session.get_bind().dialect.supports_sane_multi_rowcount:
        return None  # asyncpg's executemany reports no row count
    count = getattr(result, "rowcount", -1)
    return count if isinstance(count, int) and count >= 0 else None


async def upsert_latest(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Upsert latest values; a row replaces the stored one only if its ``(ts, seq)`` is newer.

    ``rows`` must hold at most one row per (device_id, tag).
    """
    if not rows:
        return
    insert = upsert_insert(session, LATEST)
    excluded = insert.excluded
    newer = or_(
        excluded.ts > LATEST.c.ts,
        and_(excluded.ts == LATEST.c.ts, excluded.seq > LATEST.c.seq),
    )
    stmt = insert.on_conflict_do_update(
        index_elements=["device_id", "tag"],
        set_={c: excluded[c] for c in ("ts", "seq", "kind", "num", "txt", "quality", "reason")},
        where=newer,
    )
    await session.execute(stmt, rows)


@dataclass(frozen=True, slots=True)
class DeliveryCount:
    count: int
    min_seq: int | None
    max_seq: int | None


class PointRepository:
    """Reads of one org's points."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def latest(self, device_id: int) -> list[Latest]:
        stmt = (
            select(Latest)
            .where(Latest.org_id == self.org_id, Latest.device_id == device_id)
            .order_by(Latest.tag)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def range(
        self,
        device_id: int,
        *,
        tag: str | None,
        start_ms: int | None,
        end_ms: int | None,
        after: tuple[int, int] | None,
        limit: int,
    ) -> list[Point]:
        """Points ordered by ``(ts, seq)``, ``start <= ts < end``, strictly after the
        ``(ts, seq)`` keyset position ``after``."""
        stmt = select(Point).where(Point.org_id == self.org_id, Point.device_id == device_id)
        if tag is not None:
            stmt = stmt.where(Point.tag == tag)
        if start_ms is not None:
            stmt = stmt.where(Point.ts >= start_ms)
        if end_ms is not None:
            stmt = stmt.where(Point.ts < end_ms)
        if after is not None:
            stmt = stmt.where(tuple_(Point.ts, Point.seq) > tuple_(*after))
        stmt = stmt.order_by(Point.ts, Point.seq).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    async def delivery(self, gateway_id: int, from_seq: int, to_seq: int) -> DeliveryCount:
        """How many sequence numbers of the gateway in ``[from_seq, to_seq]`` are stored
        (distinct by construction: ``(gateway_id, seq)`` is the key)."""
        stmt = select(func.count(), func.min(Point.seq), func.max(Point.seq)).where(
            Point.org_id == self.org_id,
            Point.gateway_id == gateway_id,
            Point.seq >= from_seq,
            Point.seq <= to_seq,
        )
        count, low, high = (await self.session.execute(stmt)).one()
        return DeliveryCount(count=int(count), min_seq=low, max_seq=high)
