"""All routers of ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api import (
    api_keys,
    audit,
    auth,
    cas,
    certificates,
    cohorts,
    commands,
    delivery,
    devices,
    health,
    org,
    products,
    telemetry,
    users,
)

api_router = APIRouter(prefix="/api/v1")
for module in (
    health, devices, products, cohorts, telemetry, delivery, commands, api_keys, auth, org,
    users, audit, cas, certificates,
):
    api_router.include_router(module.router)
