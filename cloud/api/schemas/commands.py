"""Commands to gateways and their results."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.api.schemas.common import QualityName, Timestamp
from cloud.contract import CommandAction, CommandErrorCode, WireValue


class CommandCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: CommandAction
    tag: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    value: WireValue = None
    timeout: Annotated[float, Field(gt=0, le=300)] | None = Field(
        default=None, description="seconds to wait for the gateway's answer"
    )

    @model_validator(mode="after")
    def _shape(self) -> CommandCreate:
        if self.action in ("write", "read") and self.tag is None:
            raise ValueError(f"action {self.action!r} needs a 'tag'")
        if self.action == "write" and "value" not in self.model_fields_set:
            raise ValueError("action 'write' needs a 'value'")
        if self.action == "reload_config" and self.tag is not None:
            raise ValueError("action 'reload_config' takes no 'tag'")
        return self


class CommandResultPublic(BaseModel):
    id: str = Field(description="request id")
    ok: bool
    ts: Timestamp
    value: WireValue = None
    quality: QualityName | None = None
    error: str | None = None
    code: CommandErrorCode | None = None
