"""``/api/v1/health``: liveness for load balancers (no authentication, no tenant data)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import text

from cloud.api.deps import SessionDep
from cloud.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health(request: Request, session: SessionDep) -> Health:
    await session.execute(text("SELECT 1"))
    mqtt = request.app.state.mqtt
    return Health(status="ok", database=session.get_bind().dialect.name,
                  mqtt_connected=bool(mqtt is not None and mqtt.connected))
