"""Public request/response models of the REST API (the only shapes clients see), one
module per resource family; the common ones are re-exported here."""

from cloud.api.schemas.access import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    AuditEntryPublic,
    AuditPage,
    Login,
    LoginResult,
    Me,
    OrgPublic,
    OrgUpdate,
    PasswordChange,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from cloud.api.schemas.commands import CommandCreate, CommandResultPublic
from cloud.api.schemas.common import (
    QUALITY_NAMES,
    Problem,
    PublicModel,
    QualityName,
    Timestamp,
    from_ms,
    iso_ms,
)
from cloud.api.schemas.devices import DeviceCreate, DeviceList, DevicePublic
from cloud.api.schemas.health import Health
from cloud.api.schemas.telemetry import (
    Delivery,
    LatestValue,
    LatestValues,
    TelemetryPage,
    TelemetryPoint,
)

__all__ = [
    "QUALITY_NAMES",
    "ApiKeyCreate",
    "ApiKeyCreated",
    "ApiKeyPublic",
    "AuditEntryPublic",
    "AuditPage",
    "CommandCreate",
    "CommandResultPublic",
    "Delivery",
    "DeviceCreate",
    "DeviceList",
    "DevicePublic",
    "Health",
    "LatestValue",
    "LatestValues",
    "Login",
    "LoginResult",
    "Me",
    "OrgPublic",
    "OrgUpdate",
    "PasswordChange",
    "Problem",
    "PublicModel",
    "QualityName",
    "TelemetryPage",
    "TelemetryPoint",
    "Timestamp",
    "UserCreate",
    "UserPublic",
    "UserUpdate",
    "from_ms",
    "iso_ms",
]
