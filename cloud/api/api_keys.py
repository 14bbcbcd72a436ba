"""``/api/v1/api-keys``: keys of the caller's org (admins manage them; nobody mints or
revokes a key above their own role)."""

from __future__ import annotations

from fastapi import APIRouter, status

from cloud.api.deps import CanManageAccess, RowId, SessionDep
from cloud.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic
from cloud.auth import apikeys

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


@router.get("", response_model=list[ApiKeyPublic])
async def list_keys(session: SessionDep, principal: CanManageAccess) -> list[ApiKeyPublic]:
    return [ApiKeyPublic.model_validate(row) for row in await apikeys.list_keys(session, principal)]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(
    body: ApiKeyCreate, session: SessionDep, principal: CanManageAccess
) -> ApiKeyCreated:
    """Create a key; the response is the only time the key is shown."""
    issued = await apikeys.create_key(
        session, principal, name=body.name, role=body.role, expires_at=body.expires_at,
        rate_limit=body.rate_limit,
    )
    return ApiKeyCreated.model_validate(
        {**ApiKeyPublic.model_validate(issued.row).model_dump(), "key": issued.secret}
    )


@router.get("/{key_id}", response_model=ApiKeyPublic)
async def get_key(key_id: RowId, session: SessionDep, principal: CanManageAccess) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(await apikeys.get_key(session, principal, key_id))


@router.delete("/{key_id}", response_model=ApiKeyPublic)
async def revoke_key(
    key_id: RowId, session: SessionDep, principal: CanManageAccess
) -> ApiKeyPublic:
    """Revoke a key (idempotent); it fails with 401 from then on."""
    return ApiKeyPublic.model_validate(await apikeys.revoke_key(session, principal, key_id))
