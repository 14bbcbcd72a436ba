"""All routers of ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from cloud.api import api_keys, commands, delivery, devices, health, telemetry

api_router = APIRouter(prefix="/api/v1")
for module in (health, devices, telemetry, delivery, commands, api_keys):
    api_router.include_router(module.router)
