"""FastAPI dependencies: the database session, the caller (API key → org and role), and
the app's services. Routes declare what they need with these ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.auth.apikeys import Principal, authenticate
from cloud.commands import CommandDispatcher
from cloud.errors import Unauthorized
from cloud.store.db import Store
from cloud.store.models import Role

# For the OpenAPI security scheme only; the header is parsed below for precise errors.
_bearer = HTTPBearer(auto_error=False, description="an API key: 'Bearer fgk_...'")


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_session(store: Annotated[Store, Depends(get_store)]) -> AsyncIterator[AsyncSession]:
    async with store.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def get_principal(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <key>``; 401 problem otherwise."""
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer fgk_...'")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <API key>'")
    principal = await authenticate(session, key.strip())
    await session.commit()  # last_used_at
    return principal


def require_role(role: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(role)
        return principal

    dependency.__name__ = f"require_{role.value}"
    return dependency


Viewer = Annotated[Principal, Depends(require_role(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require_role(Role.OPERATOR))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
Owner = Annotated[Principal, Depends(require_role(Role.OWNER))]


def get_dispatcher(request: Request) -> CommandDispatcher:
    dispatcher: CommandDispatcher = request.app.state.dispatcher
    return dispatcher


DispatcherDep = Annotated[CommandDispatcher, Depends(get_dispatcher)]
