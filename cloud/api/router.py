"""All routers of ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api import (
    api_keys,
    audit,
    auth,
    commands,
    delivery,
    devices,
    health,
    org,
    telemetry,
    users,
)

api_router = APIRouter(prefix="/api/v1")
for module in (health, devices, telemetry, delivery, commands, api_keys, auth, org, users, audit):
    api_router.include_router(module.router)
