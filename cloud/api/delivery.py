"""``/api/v1/devices/{gateway}/delivery``: how many readings of a sequence range arrived."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from cloud import telemetry
from cloud.api.deps import CanRead, SessionDep
from cloud.api.devices import DeviceName
from cloud.api.schemas import Delivery

router = APIRouter(prefix="/devices", tags=["telemetry"])

SeqNo = Annotated[int, Query(ge=0, le=2**63 - 1)]


@router.get("/{device}/delivery", response_model=Delivery)
async def delivery(
    device: DeviceName, from_seq: SeqNo, to_seq: SeqNo, session: SessionDep, principal: CanRead
) -> Delivery:
    """Distinct stored sequence numbers of the gateway in ``[from_seq, to_seq]``."""
    return await telemetry.delivery(session, principal.org_id, device, from_seq, to_seq)
