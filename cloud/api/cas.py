"""``/api/v1/cas``: the org's certificate authorities (generated or registered) and
their CRLs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from cloud import identity
from cloud.api.deps import CanManageIdentity, CanRead, SessionDep
from cloud.api.schemas.identity import MAX_ID, CaCreate, CaPublic, CaUpdate

router = APIRouter(prefix="/cas", tags=["certificate-authorities"])

PEM_CRL = "application/x-pem-file"
CaId = Annotated[int, Path(ge=1, le=MAX_ID, description="id of the CA")]

log = logging.getLogger(__name__)


def get_ca_secret(request: Request) -> bytes | None:
    """The node's password of CA private keys (``cloud.auth.keystore``), set at start-up."""
    secret: bytes | None = getattr(request.app.state, "ca_secret", None)
    return secret


CaSecretDep = Annotated[bytes | None, Depends(get_ca_secret)]


def get_trust(request: Request) -> Callable[[CaPublic], None]:
    """Tells the running embedded broker (``app.state.trust_ca``, None without one) about
    an enabled CA, after the commit, so its TLS listener accepts the CA's devices at once."""
    trust_ca: Callable[[str], None] | None = getattr(request.app.state, "trust_ca", None)

    def trust(ca: CaPublic) -> None:
        if trust_ca is None or ca.disabled:
            return
        try:
            trust_ca(ca.certificate)
        except Exception:  # committed already: the broker learns it at its next start
            log.exception("the broker could not load CA %s into its trust store", ca.id)

    return trust


TrustDep = Annotated[Callable[[CaPublic], None], Depends(get_trust)]


@router.get("", response_model=list[CaPublic])
async def list_cas(session: SessionDep, principal: CanRead) -> list[CaPublic]:
    return await identity.list_cas(session, principal.org_id)


@router.post("", response_model=CaPublic, status_code=status.HTTP_201_CREATED)
async def create_ca(
    body: CaCreate,
    session: SessionDep,
    principal: CanManageIdentity,
    secret: CaSecretDep,
    trust: TrustDep,
) -> CaPublic:
    """Generate a CA (omit ``certificate``), or register an existing CA certificate: the
    cloud then accepts the device certificates it signed, but cannot sign CSRs with it."""
    created = await identity.create_ca(
        session, principal, name=body.name, certificate=body.certificate,
        jit_registration=body.jit_registration, days=body.days, secret=secret,
    )
    trust(created)
    return created


@router.get("/{ca_id}", response_model=CaPublic)
async def get_ca(ca_id: CaId, session: SessionDep, principal: CanRead) -> CaPublic:
    return await identity.get_ca(session, principal.org_id, ca_id)


@router.patch("/{ca_id}", response_model=CaPublic)
async def update_ca(
    ca_id: CaId, body: CaUpdate, session: SessionDep, principal: CanManageIdentity,
    trust: TrustDep,
) -> CaPublic:
    """Rename, switch just-in-time registration, disable or re-enable."""
    updated = await identity.update_ca(session, principal, ca_id, body)
    if body.disabled is False:
        trust(updated)
    return updated


@router.delete("/{ca_id}", response_model=CaPublic)
async def disable_ca(ca_id: CaId, session: SessionDep, principal: CanManageIdentity) -> CaPublic:
    """Disable the CA (idempotent): it signs nothing more and devices presenting a
    certificate it issued are refused. The record stays; PATCH re-enables it."""
    return await identity.disable_ca(session, principal, ca_id)


@router.get(
    "/{ca_id}/crl",
    response_class=Response,
    responses={200: {"content": {PEM_CRL: {}}, "description": "the CRL (PEM)"}},
)
async def crl(
    ca_id: CaId, session: SessionDep, principal: CanRead, secret: CaSecretDep
) -> Response:
    """The CA's certificate revocation list (PEM): what a Mosquitto ``crlfile`` reads.
    Only for CAs whose private key the cloud holds."""
    body = await identity.ca_crl(session, principal.org_id, ca_id, secret)
    return Response(body, media_type=PEM_CRL)
