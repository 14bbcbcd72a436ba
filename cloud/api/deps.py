"""FastAPI dependencies: the database session, the caller (API key or console session →
org and role, rate-limited) and the app's services. Routes declare what they need with
these ``Annotated`` aliases; each route depends on exactly one permission alias
(``CanRead`` … ``CanManageOrg``), which the role and tenancy tests read back from the
route's dependency tree."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.api.schemas.common import MAX_ID
from cloud.auth import apikeys, sessions
from cloud.auth.permissions import Permission
from cloud.auth.principal import Principal
from cloud.auth.ratelimit import RateLimiter
from cloud.commands import CommandDispatcher
from cloud.errors import Unauthorized
from cloud.store.db import Store

# For the OpenAPI security scheme only; the header is parsed below for precise errors.
_bearer = HTTPBearer(
    auto_error=False, description="an API key 'Bearer fgk_...' or a console session 'fgs_...'"
)


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_session(store: Annotated[Store, Depends(get_store)]) -> AsyncIterator[AsyncSession]:
    async with store.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="row id")]
"""A numeric id in a path: bounded so a huge number is a 422, not a database error."""


def bearer_token(request: Request) -> str:
    """The secret of ``Authorization: Bearer <secret>``; 401 problem otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer fgk_...'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <API key or session>'")
    return token.strip()


async def get_principal(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller: an API key (``fgk_``) or a console session (``fgs_``); 401 otherwise,
    429 when over its rate limit."""
    token = bearer_token(request)
    if token.startswith(sessions.SESSION_PREFIX):
        principal = await sessions.authenticate(session, token)
    else:
        principal = await apikeys.authenticate(session, token)
    await session.commit()  # last_used_at
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(principal.limit_key, principal.rate_limit)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]

PermissionCheck = Callable[..., Coroutine[Any, Any, Principal]]


def _permission_dependency(permission: Permission) -> PermissionCheck:
    async def dependency(principal: PrincipalDep) -> Principal:
        principal.require_permission(permission)
        return principal

    dependency.__name__ = f"require_{permission.value}"
    dependency.permission = permission  # type: ignore[attr-defined]  # read by the tests
    return dependency


PERMISSION_DEPENDENCIES: dict[Permission, PermissionCheck] = {
    permission: _permission_dependency(permission) for permission in Permission
}


def permission_of(dependency: Callable[..., Any]) -> Permission | None:
    """The permission a dependency enforces, if it is one of ours."""
    return getattr(dependency, "permission", None)


CanRead = Annotated[Principal, Depends(PERMISSION_DEPENDENCIES[Permission.READ])]
CanOperate = Annotated[Principal, Depends(PERMISSION_DEPENDENCIES[Permission.OPERATE])]
CanManageDevices = Annotated[
    Principal, Depends(PERMISSION_DEPENDENCIES[Permission.MANAGE_DEVICES])
]
CanManageIdentity = Annotated[
    Principal, Depends(PERMISSION_DEPENDENCIES[Permission.MANAGE_IDENTITY])
]
CanManageAccess = Annotated[
    Principal, Depends(PERMISSION_DEPENDENCIES[Permission.MANAGE_ACCESS])
]
CanReadAudit = Annotated[Principal, Depends(PERMISSION_DEPENDENCIES[Permission.READ_AUDIT])]
CanManageOrg = Annotated[Principal, Depends(PERMISSION_DEPENDENCIES[Permission.MANAGE_ORG])]


def get_dispatcher(request: Request) -> CommandDispatcher:
    dispatcher: CommandDispatcher = request.app.state.dispatcher
    return dispatcher


DispatcherDep = Annotated[CommandDispatcher, Depends(get_dispatcher)]
