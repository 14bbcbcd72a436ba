"""Request and response bodies of the device API (the telemetry body is the wire
contract's ``TelemetryBatch``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from cloud.api.schemas.common import Timestamp
from cloud.api.schemas.identity import MAX_DEVICE_CERT_DAYS, Pem


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: Pem = Field(description="a PEM CSR for the device's key; its subject is replaced")
    days: Annotated[int, Field(ge=1, le=MAX_DEVICE_CERT_DAYS)] = 365


class EnrollResponse(BaseModel):
    certificate: str = Field(description="the device certificate (PEM), CN = the device id")
    ca_chain: str = Field(description="the CA that signed it (PEM)")
    broker_ca: str | None = Field(
        default=None,
        description="the CA of the embedded broker's TLS server certificate (PEM), when the "
        "cloud runs one: what the gateway's uplink.tls.ca must trust",
    )
    serial: str
    fingerprint: str
    not_after: Timestamp


class TelemetryAccepted(BaseModel):
    gateway: str
    points: int = Field(description="readings in the batch")
    stored: int | None = Field(
        default=None, description="new readings stored (re-sent ones are not stored twice); "
        "null when the database does not report it"
    )
