"""API keys, users and console sessions."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.schemas.common import PublicModel, Timestamp
from cloud.store.models import Role


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role = Role.VIEWER


class ApiKeyPublic(PublicModel):
    id: int
    name: str
    prefix: str
    role: Role
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown once, store it now")
