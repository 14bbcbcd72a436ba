"""The caller of the device API: the device of a ``Bearer fgd_...`` token (401 problem
otherwise, 429 when over the node's per-caller rate limit)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud.api.deps import SessionDep
from cloud.auth.device_identity import DeviceIdentity
from cloud.auth.device_tokens import authenticate_token
from cloud.auth.ratelimit import RateLimiter
from cloud.errors import Unauthorized

# For the OpenAPI security scheme only; the header is parsed below for precise errors.
_bearer = HTTPBearer(auto_error=False, description="a device token 'Bearer fgd_...'")


async def get_device(
    request: Request,
    session: SessionDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> DeviceIdentity:
    header = request.headers.get("authorization")
    if header is None:
        raise Unauthorized("missing credentials: send 'Authorization: Bearer fgd_...'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <device token fgd_...>'")
    device = await authenticate_token(session, token.strip())
    await session.commit()  # last_used_at
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.check(f"device:{device.device_id}", None)
    return device


DeviceDep = Annotated[DeviceIdentity, Depends(get_device)]
