"""``/api/v1/devices/{device}/certificates``, ``/tokens``, ``/revoke`` and ``/restore``:
the credentials of a gateway."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from cloud import identity
from cloud.api.cas import CaSecretDep
from cloud.api.deps import CanManageIdentity, CanRead, SessionDep
from cloud.api.schemas.identity import (
    DEVICE_NAME_PATTERN,
    MAX_ID,
    CertificateCreate,
    DeviceCertificateIssued,
    DeviceCertificatePublic,
    DeviceRevocation,
    DeviceTokenCreate,
    DeviceTokenCreated,
    DeviceTokenPublic,
)

router = APIRouter(prefix="/devices", tags=["device-identity"])

Device = Annotated[
    str,
    Path(
        pattern=DEVICE_NAME_PATTERN,
        description="a gateway name (or 'gateway.device' for revocation)",
    ),
]
CertId = Annotated[int, Path(ge=1, le=MAX_ID, description="id of the certificate")]
TokenId = Annotated[int, Path(ge=1, le=MAX_ID, description="id of the token")]


@router.get("/{device}/certificates", response_model=list[DeviceCertificatePublic])
async def list_certificates(
    device: Device, session: SessionDep, principal: CanRead
) -> list[DeviceCertificatePublic]:
    return await identity.list_certificates(session, principal.org_id, device)


@router.post(
    "/{device}/certificates",
    response_model=DeviceCertificateIssued,
    status_code=status.HTTP_201_CREATED,
)
async def sign_certificate(
    device: Device,
    body: CertificateCreate,
    session: SessionDep,
    principal: CanManageIdentity,
    secret: CaSecretDep,
) -> DeviceCertificateIssued:
    """Sign the CSR with one of the org's CAs; the certificate's subject is
    ``CN=<device>``, whatever the CSR asked for."""
    return await identity.sign_certificate(
        session, principal, device, body.csr, ca_id=body.ca, days=body.days, secret=secret
    )


@router.get("/{device}/certificates/{cert_id}", response_model=DeviceCertificatePublic)
async def get_certificate(
    device: Device, cert_id: CertId, session: SessionDep, principal: CanRead
) -> DeviceCertificatePublic:
    return await identity.get_certificate(session, principal.org_id, device, cert_id)


@router.delete("/{device}/certificates/{cert_id}", response_model=DeviceCertificatePublic)
async def revoke_certificate(
    device: Device, cert_id: CertId, session: SessionDep, principal: CanManageIdentity
) -> DeviceCertificatePublic:
    """Revoke the certificate (idempotent): refused at once, listed in its CA's CRL."""
    return await identity.revoke_certificate(session, principal, device, cert_id)


@router.get("/{device}/tokens", response_model=list[DeviceTokenPublic])
async def list_tokens(
    device: Device, session: SessionDep, principal: CanRead
) -> list[DeviceTokenPublic]:
    return await identity.list_tokens(session, principal.org_id, device)


@router.post(
    "/{device}/tokens", response_model=DeviceTokenCreated, status_code=status.HTTP_201_CREATED
)
async def create_token(
    device: Device, body: DeviceTokenCreate, session: SessionDep, principal: CanManageIdentity
) -> DeviceTokenCreated:
    """A device token for HTTP/CoAP (or MQTT username/password); shown only in this
    response."""
    return await identity.create_token(
        session, principal, device, name=body.name, expires_at=body.expires_at
    )


@router.delete("/{device}/tokens/{token_id}", response_model=DeviceTokenPublic)
async def revoke_token(
    device: Device, token_id: TokenId, session: SessionDep, principal: CanManageIdentity
) -> DeviceTokenPublic:
    """Revoke the token (idempotent); refused at once."""
    return await identity.revoke_token(session, principal, device, token_id)


@router.post("/{device}/revoke", response_model=DeviceRevocation)
async def revoke_device(
    device: Device, session: SessionDep, principal: CanManageIdentity
) -> DeviceRevocation:
    """Revoke the device with all its certificates and tokens; every credential of it is
    refused from now on, also ones issued later by a CA outside the cloud."""
    return await identity.revoke_device(session, principal, device)


@router.post("/{device}/restore", response_model=DeviceRevocation)
async def restore_device(
    device: Device, session: SessionDep, principal: CanManageIdentity
) -> DeviceRevocation:
    """Lift the device's revocation. Its revoked certificates and tokens stay revoked."""
    return await identity.restore_device(session, principal, device)
