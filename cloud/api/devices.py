"""``/api/v1/devices``: gateways and field devices of the caller's org, and their bulk
import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from cloud import device_import, devices
from cloud.api.deps import CanManageDevices, CanRead, SessionDep
from cloud.api.schemas import DeviceCreate, DeviceList, DevicePublic, DeviceUpdate, ImportReport
from cloud.api.schemas.devices import DEVICE_NAME_PATTERN, MAX_LABELS, Label
from cloud.api.schemas.registry import REGISTRY_NAME_PATTERN
from cloud.device_import import ImportMode
from cloud.store.models import DeviceKind
from gateway.config_types import NAME_PATTERN

router = APIRouter(prefix="/devices", tags=["devices"])

DeviceName = Annotated[
    str,
    Path(pattern=DEVICE_NAME_PATTERN, description="a gateway name, or 'gateway.device'"),
]
RegistryRef = Annotated[str | None, Query(pattern=REGISTRY_NAME_PATTERN)]

_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "name,kind,parent,product,cohort,labels,description,attr.site\n"
                "plant7,gateway,,press-gw,early,line=3;eu,Press line 7,berlin\n",
            },
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/DeviceCreate"}}
            },
        },
    }
}


@router.get("", response_model=DeviceList)
async def list_devices(
    session: SessionDep,
    principal: CanRead,
    kind: DeviceKind | None = None,
    parent: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="only the children of this gateway")
    ] = None,
    product: RegistryRef = None,
    cohort: RegistryRef = None,
    label: Annotated[
        list[Label] | None,
        Query(max_length=MAX_LABELS, description="has this label (repeat: all of them)"),
    ] = None,
    online: Annotated[
        bool | None, Query(description="false also matches devices never reported")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
) -> DeviceList:
    return await devices.list_devices(
        session, principal.org_id, kind=kind, parent=parent, product=product, cohort=cohort,
        labels=tuple(label or ()), online=online, limit=limit, cursor=cursor,
    )


@router.post("", response_model=DevicePublic, status_code=status.HTTP_201_CREATED)
async def register_device(
    body: DeviceCreate, session: SessionDep, principal: CanManageDevices
) -> DevicePublic:
    """Register a gateway (its telemetry is stored from then on; the name must be free in
    every org), or a field device ``{parent}.{short}`` under one of the org's gateways."""
    return await devices.register_device(session, principal, body)


@router.post("/import", response_model=ImportReport, openapi_extra=_IMPORT_BODY)
async def import_devices(
    request: Request,
    session: SessionDep,
    principal: CanManageDevices,
    mode: Annotated[
        ImportMode, Query(description="create: new devices only; upsert: also change")
    ] = ImportMode.UPSERT,
    dry_run: Annotated[bool, Query(description="report only, write nothing")] = False,
    atomic: Annotated[bool, Query(description="all rows or none (422 with the report)")] = False,
) -> ImportReport:
    """Register or change many devices from CSV (header row; ``labels`` separated by
    ``;``; ``attr.<key>`` columns) or a JSON array; the report has one entry per row."""
    return await device_import.import_devices(
        session, principal, content_type=request.headers.get("content-type", ""),
        body=await request.body(), mode=mode, dry_run=dry_run, atomic=atomic,
    )


@router.get("/{device}", response_model=DevicePublic)
async def get_device(device: DeviceName, session: SessionDep, principal: CanRead) -> DevicePublic:
    return await devices.get_device(session, principal.org_id, device)


@router.patch("/{device}", response_model=DevicePublic)
async def update_device(
    device: DeviceName, body: DeviceUpdate, session: SessionDep, principal: CanManageDevices
) -> DevicePublic:
    """Change the fields sent; ``product``/``cohort`` null clears them."""
    return await devices.update_device(session, principal, device, body)


@router.delete("/{device}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_device(
    device: DeviceName, request: Request, session: SessionDep, principal: CanManageDevices
) -> Response:
    """Delete the device (a gateway with its field devices) and its telemetry."""
    await devices.delete_device(session, principal, device)
    ingest = getattr(request.app.state, "ingest", None)
    if ingest is not None:
        ingest.forget(device)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
