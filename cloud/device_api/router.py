"""``/device/v1``: enrolment and HTTP telemetry for devices holding a device token."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from cloud import identity
from cloud.api.cas import CaSecretDep
from cloud.api.deps import SessionDep
from cloud.auth.device_identity import DeviceIdentity
from cloud.auth.principal import Actor
from cloud.contract import TelemetryBatch, decode_batch
from cloud.device_api.deps import DeviceDep
from cloud.device_api.schemas import EnrollRequest, EnrollResponse, TelemetryAccepted
from cloud.errors import InvalidParameter, NotAGateway, NotFound
from cloud.ingest.service import IngestService, InvalidBatch
from gateway.config_types import NAME_PATTERN

router = APIRouter(prefix="/device/v1", tags=["device-api"])

_GATEWAY_NAME = re.compile(NAME_PATTERN)


def _require_gateway(device: DeviceIdentity) -> None:
    if not _GATEWAY_NAME.match(device.name):
        raise NotAGateway(
            f"device {device.name!r} is a field device; its gateway talks to the cloud"
        )


@router.post(
    "/certificate", response_model=EnrollResponse, status_code=status.HTTP_201_CREATED
)
async def enroll(
    body: EnrollRequest,
    request: Request,
    session: SessionDep,
    device: DeviceDep,
    secret: CaSecretDep,
) -> EnrollResponse:
    """A client certificate for the calling gateway's own key (``fieldgate gateway
    enroll``), signed by its org's newest CA that can sign; CN = the gateway id."""
    _require_gateway(device)
    actor = Actor.device(device.org_id, device.device_id, device.name)
    issued = await identity.sign_certificate(
        session, actor, device.name, body.csr, days=body.days, secret=secret
    )
    broker_ca: str | None = getattr(request.app.state, "broker_ca_pem", None)
    return EnrollResponse(
        certificate=issued.certificate,
        ca_chain=issued.ca_chain,
        broker_ca=broker_ca,
        serial=issued.serial,
        fingerprint=issued.fingerprint,
        not_after=issued.not_after,
    )


@router.post(
    "/telemetry",
    response_model=TelemetryAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TelemetryBatch.model_json_schema()}},
        }
    },
)
async def telemetry(request: Request, device: DeviceDep) -> TelemetryAccepted:
    """One telemetry batch of the calling gateway: the body of the MQTT ``telemetry``
    topic. Answered once the batch is committed; re-sending it stores nothing twice."""
    _require_gateway(device)
    try:
        batch = decode_batch(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from exc
    ingest: IngestService = request.app.state.ingest
    try:
        result = await ingest.ingest_telemetry(device.name, batch)
    except InvalidBatch as exc:
        raise InvalidParameter(str(exc), field="body") from exc
    if not result.accepted:  # deleted between authentication and ingest
        raise NotFound(f"gateway {device.name!r} not found")
    return TelemetryAccepted(gateway=device.name, points=result.points, stored=result.stored)
