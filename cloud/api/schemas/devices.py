"""Devices: registration and the public view."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.schemas.common import PublicModel, Timestamp
from cloud.store.models import DeviceKind
from gateway.config_types import NAME_PATTERN


class DeviceCreate(BaseModel):
    """Register a gateway (field devices appear on their gateway's first data)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN, examples=["plant1"])]
    kind: Literal["gateway"] = "gateway"


class DevicePublic(PublicModel):
    name: str
    kind: DeviceKind
    parent: str | None = Field(default=None, description="the gateway of a field device")
    online: bool | None = Field(default=None, description="None: not reported yet")
    status: dict[str, Any] | None = Field(
        default=None, description="last gateway status: version, config_hash, buffer, ..."
    )
    last_seen_at: Timestamp | None = None
    created_at: Timestamp


class DeviceList(BaseModel):
    items: list[DevicePublic]
    next: str | None = Field(default=None, description="cursor of the next page, if any")
