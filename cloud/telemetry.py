"""Telemetry queries for the API: latest values, raw points by time, delivery counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.api.schemas import (
    QUALITY_NAMES,
    Delivery,
    LatestValue,
    LatestValues,
    TelemetryPage,
    TelemetryPoint,
    from_ms,
)
from cloud.errors import InvalidParameter, NotAGateway
from cloud.pagination import decode_cursor, encode_cursor
from cloud.store.devices import DeviceRepository
from cloud.store.models import DeviceKind
from cloud.store.points import PointRepository
from cloud.store.values import decode_value

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    """Milliseconds since the epoch, exactly; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(milliseconds=1)


async def latest_values(session: AsyncSession, org_id: int, device: str) -> LatestValues:
    row, _ = await DeviceRepository(session, org_id).get(device)
    values = await PointRepository(session, org_id).latest(row.id)
    return LatestValues(
        device=row.name,
        values=[
            LatestValue(
                tag=v.tag,
                value=decode_value(v.kind, v.num, v.txt),
                ts=from_ms(v.ts),
                quality=QUALITY_NAMES[v.quality],
                reason=v.reason,
            )
            for v in values
        ],
    )


async def telemetry_page(
    session: AsyncSession,
    org_id: int,
    device: str,
    *,
    tag: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
    cursor: str | None,
) -> TelemetryPage:
    """Raw points ordered by (time, sequence), ``start <= ts < end``, keyset-paginated."""
    start_ms = to_ms(start) if start is not None else None
    end_ms = to_ms(end) if end is not None else None
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidParameter("'end' must be after 'start'", field="end")
    after = decode_cursor(cursor, int, int) if cursor else None
    row, _ = await DeviceRepository(session, org_id).get(device)
    points = await PointRepository(session, org_id).range(
        row.id, tag=tag, start_ms=start_ms, end_ms=end_ms,
        after=(after[0], after[1]) if after else None, limit=limit + 1,
    )
    more = len(points) > limit
    points = points[:limit]
    return TelemetryPage(
        device=row.name,
        items=[
            TelemetryPoint(
                tag=p.tag,
                ts=from_ms(p.ts),
                value=decode_value(p.kind, p.num, p.txt),
                quality=QUALITY_NAMES[p.quality],
                reason=p.reason,
                seq=p.seq,
            )
            for p in points
        ],
        next=encode_cursor(points[-1].ts, points[-1].seq) if more else None,
    )


async def delivery(
    session: AsyncSession, org_id: int, gateway: str, from_seq: int, to_seq: int
) -> Delivery:
    """How many of the gateway's sequence numbers in ``[from_seq, to_seq]`` are stored."""
    if to_seq < from_seq:
        raise InvalidParameter("'to_seq' must be >= 'from_seq'", field="to_seq")
    row, _ = await DeviceRepository(session, org_id).get(gateway)
    if row.kind != DeviceKind.GATEWAY.value:
        raise NotAGateway(
            f"{gateway!r} is a field device; delivery is counted per gateway", device=gateway
        )
    counted = await PointRepository(session, org_id).delivery(row.id, from_seq, to_seq)
    expected = to_seq - from_seq + 1
    return Delivery(
        gateway=row.name, from_seq=from_seq, to_seq=to_seq, expected=expected,
        count=counted.count, missing=expected - counted.count,
        min_seq=counted.min_seq, max_seq=counted.max_seq,
    )
