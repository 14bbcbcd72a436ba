"""``/api/v1/devices``: gateways and field devices of the caller's org."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from cloud import devices
from cloud.api.deps import CanManageDevices, CanRead, SessionDep
from cloud.api.schemas import DeviceCreate, DeviceList, DevicePublic
from cloud.store.models import DeviceKind

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceName = Annotated[str, Path(description="a gateway name, or 'gateway.device'")]


@router.get("", response_model=DeviceList)
async def list_devices(
    session: SessionDep,
    principal: CanRead,
    kind: DeviceKind | None = None,
    parent: Annotated[str | None, Query(description="only the children of this gateway")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> DeviceList:
    return await devices.list_devices(
        session, principal.org_id, kind=kind, parent=parent, limit=limit, cursor=cursor
    )


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED)
async def register_gateway(
    body: DeviceCreate, session: SessionDep, principal: CanManageDevices
) -> DevicePublic:
    """Register a gateway; its telemetry is stored from then on."""
    return await devices.register_gateway(session, principal.org_id, body.name)


@router.get("/{device}", response_model=DevicePublic)
async def get_device(device: DeviceName, session: SessionDep, principal: CanRead) -> DevicePublic:
    return await devices.get_device(session, principal.org_id, device)
