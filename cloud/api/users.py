"""``/api/v1/users``: people who sign in to the console (admins manage them)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from cloud import users
from cloud.api.deps import CanManageAccess, RowId, SessionDep
from cloud.api.schemas import UserCreate, UserPublic, UserUpdate

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserPublic])
async def list_users(session: SessionDep, principal: CanManageAccess) -> list[UserPublic]:
    return [users.public(row) for row in await users.list_users(session, principal)]


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
async def create_user(
    body: UserCreate, session: SessionDep, principal: CanManageAccess
) -> UserPublic:
    """Create a user of the caller's org, with a role no higher than the caller's."""
    return users.public(await users.create_user(session, principal.org_id, body, actor=principal))


@router.get("/{user_id}", response_model=UserPublic)
async def get_user(user_id: RowId, session: SessionDep, principal: CanManageAccess) -> UserPublic:
    return users.public(await users.get_user(session, principal, user_id))


@router.patch("/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: RowId, body: UserUpdate, session: SessionDep, principal: CanManageAccess
) -> UserPublic:
    """Change name, role, password or disable; 409 if the org would lose its last owner."""
    return users.public(await users.update_user(session, principal, user_id, body))


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(user_id: RowId, session: SessionDep, principal: CanManageAccess) -> Response:
    await users.delete_user(session, principal, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
