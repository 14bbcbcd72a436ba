"""Shared pieces of the REST API models: timestamps, quality names, problem details."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


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
MAX_ID = 2**63 - 1
"""Largest row id (a signed 64-bit integer): larger ids in a request are a 422."""

QualityName = Literal["good", "uncertain", "bad"]
QUALITY_NAMES: tuple[QualityName, ...] = ("good", "uncertain", "bad")


class PublicModel(BaseModel):
    """A response model read from ORM rows."""

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
