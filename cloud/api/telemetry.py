"""``/api/v1/devices/{device}/latest`` and ``/telemetry``: stored readings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from cloud import telemetry
from cloud.api.deps import CanRead, SessionDep
from cloud.api.devices import DeviceName
from cloud.api.schemas import LatestValues, TelemetryPage

router = APIRouter(prefix="/devices", tags=["telemetry"])


@router.get("/{device}/latest", response_model=LatestValues)
async def latest(device: DeviceName, session: SessionDep, principal: CanRead) -> LatestValues:
    """The newest reading of every tag of the device."""
    return await telemetry.latest_values(session, principal.org_id, device)


@router.get("/{device}/telemetry", response_model=TelemetryPage)
async def raw_points(
    device: DeviceName,
    session: SessionDep,
    principal: CanRead,
    tag: Annotated[str | None, Query(max_length=255)] = None,
    start: Annotated[datetime | None, Query(description="ISO-8601, inclusive")] = None,
    end: Annotated[datetime | None, Query(description="ISO-8601, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> TelemetryPage:
    """Raw readings ordered by time (then sequence number), one page at a time."""
    return await telemetry.telemetry_page(
        session, principal.org_id, device,
        tag=tag, start=start, end=end, limit=limit, cursor=cursor,
    )
