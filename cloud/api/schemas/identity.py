"""Device identity: certificate authorities, device certificates, device tokens,
revocation."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from cloud.api.schemas.common import MAX_ID, PublicModel, Timestamp
from gateway.config_types import NAME_PATTERN

MAX_PEM_BYTES = 16 * 1024
MAX_DEVICE_CERT_DAYS = 3650
MAX_CA_DAYS = 36500
"""Row ids are 64-bit: larger numbers cannot name a row (and overflow the database)."""

Pem = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PEM_BYTES,
        description=f"PEM text, at most {MAX_PEM_BYTES} characters",
    ),
]
IdentityName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        # no control characters (PostgreSQL refuses NUL), no surrounding blanks
        pattern=r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
        description="printable text without leading or trailing blanks",
    ),
]
CertificateSource = Literal["issued", "jit"]
_SHORT_NAME = NAME_PATTERN.lstrip("^").rstrip("$")
DEVICE_NAME_PATTERN = rf"^{_SHORT_NAME}(\.{_SHORT_NAME})?$"
"""A gateway ``plant1`` or a field device ``plant1.pump1``."""


class CaCreate(BaseModel):
    """Generate a CA (no ``certificate``) or register an existing one (``certificate``
    only: the cloud then verifies device certificates it issued, but cannot sign CSRs)."""

    model_config = ConfigDict(extra="forbid")

    name: IdentityName
    certificate: Pem | None = Field(
        default=None, description="an existing CA certificate (PEM); omit to generate one"
    )
    jit_registration: bool = Field(
        default=False,
        description="register unknown gateways that present a certificate this CA signed",
    )
    days: Annotated[int, Field(ge=1, le=MAX_CA_DAYS)] | None = Field(
        default=None, description="validity of a generated CA (default 3650 days)"
    )

    @model_validator(mode="after")
    def _days_only_when_generating(self) -> CaCreate:
        if self.certificate is not None and self.days is not None:
            raise ValueError("'days' applies to a generated CA; a registered one has its own")
        return self


class CaUpdate(BaseModel):
    """Only the fields sent change."""

    model_config = ConfigDict(extra="forbid")

    name: IdentityName | None = None
    jit_registration: bool | None = None
    disabled: bool | None = Field(
        default=None,
        description="true: the CA signs nothing and devices it issued are refused",
    )


class CaPublic(PublicModel):
    id: int
    name: str
    subject: str
    fingerprint: str = Field(description="SHA-256 of the DER certificate, hex")
    not_after: Timestamp
    jit_registration: bool
    can_sign: bool = Field(description="the cloud holds the CA's private key")
    disabled: bool
    disabled_at: Timestamp | None = None
    created_at: Timestamp
    certificate: str = Field(description="the CA certificate (PEM)")


class CertificateCreate(BaseModel):
    """Sign a CSR for the device; the certificate's subject is ``CN=<device name>``,
    whatever the CSR asked for."""

    model_config = ConfigDict(extra="forbid")

    csr: Pem = Field(description="a PEM certificate signing request")
    ca: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="id of the signing CA (default: the newest that can sign)"
    )
    days: Annotated[int, Field(ge=1, le=MAX_DEVICE_CERT_DAYS)] = 365


class DeviceCertificatePublic(PublicModel):
    id: int
    device: str
    ca_id: int
    serial: str = Field(description="serial number, hex")
    fingerprint: str
    common_name: str
    not_before: Timestamp
    not_after: Timestamp
    source: CertificateSource = Field(
        description="issued: signed by the cloud; jit: learnt when the device connected"
    )
    created_at: Timestamp
    revoked_at: Timestamp | None = None


class DeviceCertificateIssued(DeviceCertificatePublic):
    certificate: str = Field(description="the device certificate (PEM)")
    ca_chain: str = Field(description="the signing CA certificate (PEM)")


class DeviceTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: IdentityName
    expires_at: AwareDatetime | None = Field(default=None, description="ISO-8601 with offset")


class DeviceTokenPublic(PublicModel):
    id: int
    device: str
    name: str
    prefix: str
    created_at: Timestamp
    expires_at: Timestamp | None = None
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class DeviceTokenCreated(DeviceTokenPublic):
    token: str = Field(description="the token itself ('fgd_...'): shown once, store it now")


class DeviceRevocation(BaseModel):
    device: str
    revoked_at: Timestamp | None
    certificates_revoked: int = Field(description="certificates revoked by this call")
    tokens_revoked: int = Field(description="tokens revoked by this call")
