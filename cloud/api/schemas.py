"""Public request/response models of the REST API (the only shapes clients see)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, model_validator

from cloud.contract import CommandAction, CommandErrorCode, WireValue
from cloud.store.models import DeviceKind, Role
from gateway.config_types import NAME_PATTERN


def iso_ms(value: datetime) -> str:
    """``2026-11-25T03:04:05.123Z``: UTC, millisecond precision."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


Timestamp = Annotated[
    datetime,
    PlainSerializer(iso_ms, return_type=str, when_used="json"),
    Field(json_schema_extra={"format": "date-time", "example": "2026-11-25T03:04:05.123Z"}),
]
QualityName = Literal["good", "uncertain", "bad"]
QUALITY_NAMES: tuple[QualityName, ...] = ("good", "uncertain", "bad")


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation errors: field location and message"
    )


# -- devices -------------------------------------------------------------------------------


class DeviceCreate(BaseModel):
    """Register a gateway (field devices appear on their gateway's first data)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN, examples=["plant1"])]
    kind: Literal["gateway"] = "gateway"


class DevicePublic(_Public):
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


# -- telemetry -----------------------------------------------------------------------------


class LatestValue(BaseModel):
    tag: str
    value: WireValue
    ts: Timestamp
    quality: QualityName
    reason: str | None = None


class LatestValues(BaseModel):
    device: str
    values: list[LatestValue]


class TelemetryPoint(BaseModel):
    tag: str
    ts: Timestamp
    value: WireValue
    quality: QualityName
    reason: str | None = None
    seq: int = Field(description="the gateway's sequence number of this reading")


class TelemetryPage(BaseModel):
    device: str
    items: list[TelemetryPoint]
    next: str | None = Field(default=None, description="cursor of the next page, if any")


class Delivery(BaseModel):
    """Stored sequence numbers of a gateway in ``[from_seq, to_seq]``."""

    gateway: str
    from_seq: int
    to_seq: int
    expected: int = Field(description="to_seq - from_seq + 1")
    count: int = Field(description="distinct sequence numbers stored in the range")
    missing: int = Field(description="expected - count")
    min_seq: int | None = None
    max_seq: int | None = None


# -- commands ------------------------------------------------------------------------------


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


# -- API keys ------------------------------------------------------------------------------


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role = Role.VIEWER


class ApiKeyPublic(_Public):
    id: int
    name: str
    prefix: str
    role: Role
    created_at: Timestamp
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown once, store it now")


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    mqtt_connected: bool
