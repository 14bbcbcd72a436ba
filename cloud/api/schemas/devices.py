"""Devices: registration, changes and the public view."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from cloud.api.schemas.common import PublicModel, Timestamp
from cloud.api.schemas.registry import Attributes, Description, RegistryName, not_null
from cloud.store.models import DeviceKind
from gateway.config_types import NAME_PATTERN

MAX_LABELS = 32
MAX_LABEL_LENGTH = 64
LABEL_PATTERN = r"^[\w.:/=+@-]+$"
FIELD_DEVICE_NAME_PATTERN = NAME_PATTERN.rstrip("$") + r"\." + NAME_PATTERN.lstrip("^")
DEVICE_NAME_PATTERN = NAME_PATTERN.rstrip("$") + r"(\." + NAME_PATTERN.lstrip("^")[:-1] + r")?$"
"""A gateway's or a field device's name."""
_NAME = re.compile(NAME_PATTERN)
_FIELD_NAME = re.compile(FIELD_DEVICE_NAME_PATTERN)


def _unique(labels: list[str]) -> list[str]:
    """Labels are a set; the first occurrence keeps its place."""
    return list(dict.fromkeys(labels))


Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_LABEL_LENGTH,
        pattern=LABEL_PATTERN,
        description="letters, digits and _ . : / = + @ -",
        examples=["site=berlin"],
    ),
]
Labels = Annotated[
    list[Label],
    Field(max_length=MAX_LABELS, description=f"at most {MAX_LABELS} labels"),
    AfterValidator(_unique),
]


class DeviceCreate(BaseModel):
    """Register a gateway, or a field device under an existing gateway (field devices also
    appear on their gateway's first data)."""

    model_config = ConfigDict(extra="forbid")

    # kind and parent come first: the name is checked against them
    kind: DeviceKind = DeviceKind.GATEWAY
    parent: Annotated[str, Field(pattern=NAME_PATTERN)] | None = Field(
        default=None, validate_default=True, description="the gateway of a field device"
    )
    name: Annotated[
        str,
        Field(
            max_length=129,
            description="a gateway: 'plant1'; a field device: '{parent}.{short}'",
            examples=["plant1"],
        ),
    ]
    product: RegistryName | None = None
    cohort: RegistryName | None = Field(
        default=None, description="a cohort of the device's product"
    )
    labels: Labels = Field(default_factory=list)
    attributes: Attributes = Field(default_factory=dict)
    description: Description = ""

    @field_validator("parent")
    @classmethod
    def _parent_fits_kind(cls, parent: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind is DeviceKind.GATEWAY and parent is not None:
            raise ValueError("only a field device has a parent; a gateway has none")
        if kind is DeviceKind.FIELD and parent is None:
            raise ValueError("a field device needs its gateway as 'parent'")
        return parent

    @field_validator("name")
    @classmethod
    def _name_fits_kind(cls, name: str, info: ValidationInfo) -> str:
        kind = info.data.get("kind")
        if kind is DeviceKind.GATEWAY and not _NAME.match(name):
            raise ValueError(
                f"a gateway name must match {NAME_PATTERN} (letters, digits, '_', '-'; no dot)"
            )
        if kind is DeviceKind.FIELD:
            if not _FIELD_NAME.match(name):
                raise ValueError("a field device name is '{gateway}.{device}', e.g. 'plant1.pump1'")
            parent = info.data.get("parent")
            if parent is not None and name.partition(".")[0] != parent:
                raise ValueError(f"a field device of {parent!r} is named '{parent}.<device>'")
        return name


class DeviceUpdate(BaseModel):
    """Only the fields sent change. ``product``/``cohort`` may be null (cleared); the
    others may not. The cohort must belong to the device's (new) product."""

    model_config = ConfigDict(extra="forbid")

    labels: Labels | None = Field(default=None, description="replaces all labels")
    attributes: Attributes | None = Field(default=None, description="replaces the whole object")
    description: Description | None = None
    product: RegistryName | None = None
    cohort: RegistryName | None = None

    _present = field_validator("labels", "attributes", "description", mode="before")(not_null)


class DevicePublic(PublicModel):
    name: str
    kind: DeviceKind
    parent: str | None = Field(default=None, description="the gateway of a field device")
    product: str | None = None
    cohort: str | None = None
    labels: list[str] = Field(default_factory=list)
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    online: bool | None = Field(default=None, description="None: not reported yet")
    status: dict[str, Any] | None = Field(
        default=None, description="last gateway status: version, config_hash, buffer, ..."
    )
    last_seen_at: Timestamp | None = None
    revoked_at: Timestamp | None = Field(
        default=None, description="set: every credential of the device is refused"
    )
    created_at: Timestamp
    updated_at: Timestamp | None = Field(
        default=None, description="last change through the registry (not telemetry)"
    )


class DeviceList(BaseModel):
    items: list[DevicePublic]
    next: str | None = Field(default=None, description="cursor of the next page, if any")
