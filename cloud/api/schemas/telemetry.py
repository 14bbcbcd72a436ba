"""Stored readings: latest values, raw pages, delivery audits."""

from __future__ import annotations

from pydantic import BaseModel, Field

from cloud.api.schemas.common import QualityName, Timestamp
from cloud.contract import WireValue


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
