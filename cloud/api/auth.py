"""``/api/v1/auth``: console sign-in and sign-out, the caller's identity, own password."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request, Response, status

from cloud import orgs, users
from cloud.api.deps import CanRead, SessionDep, bearer_token
from cloud.api.schemas import Login, LoginResult, Me, PasswordChange, Problem
from cloud.auth import sessions
from cloud.auth.ratelimit import RateLimiter
from cloud.settings import CloudSettings

router = APIRouter(prefix="/auth", tags=["auth"])

SIGN_IN_RATE = 0.2
"""Sign-in attempts per second per client address and e-mail (burst: the node's), which
makes online password guessing slow without locking the real user out."""


@router.post(
    "/login",
    response_model=LoginResult,
    responses={401: {"model": Problem}, 429: {"model": Problem}},
)
async def login(body: Login, request: Request, session: SessionDep) -> LoginResult:
    """Sign in with e-mail and password; returns a session token (shown once)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    client = request.client.host if request.client else "-"
    limiter.check(f"login:{client}:{body.email.strip().lower()}", SIGN_IN_RATE)
    settings: CloudSettings = request.app.state.settings
    done = await sessions.sign_in(
        session, body.email, body.password,
        lifetime=timedelta(seconds=settings.session_lifetime),
    )
    return LoginResult(
        token=done.token, expires_at=done.session.expires_at, user=users.public(done.user)
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(request: Request, session: SessionDep, principal: CanRead) -> Response:
    """End the console session of this request (an API key is revoked under /api-keys)."""
    await sessions.sign_out(session, bearer_token(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me)
async def me(session: SessionDep, principal: CanRead) -> Me:
    return Me(
        org=await orgs.read_org(session, principal),
        role=principal.role,
        actor_type=principal.actor_type,
        actor_id=principal.actor_id,
        actor_name=principal.actor_name,
    )


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange, session: SessionDep, principal: CanRead
) -> Response:
    """A signed-in user changes their own password."""
    await users.change_own_password(session, principal, body.current_password, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
