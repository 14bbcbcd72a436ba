"""The device registry's own resources: products (device types), cohorts (groups of
devices of one product) and the bulk-import report; plus the field types that devices
share with them (names, descriptions, attributes)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from cloud.api.schemas.common import PublicModel, Timestamp

REGISTRY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_DESCRIPTION = 2000
MAX_ATTRIBUTES_BYTES = 16 * 1024


def _bounded_attributes(value: dict[str, Any]) -> dict[str, Any]:
    try:
        size = len(json.dumps(value, allow_nan=False, separators=(",", ":")).encode())
    except ValueError as exc:  # NaN or Infinity: no JSON column stores them
        raise ValueError("numbers must be finite (no NaN or Infinity)") from exc
    if size > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES_BYTES} bytes as JSON; this has {size}")
    return value


RegistryName = Annotated[
    str,
    Field(
        pattern=REGISTRY_NAME_PATTERN,
        max_length=128,
        description="1-128 letters, digits, '_', '.' or '-', starting with a letter or digit",
        examples=["press-gw-v2"],
    ),
]
"""A product or cohort name: unique in the org, safe in a URL path."""

def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise ValueError("may not contain NUL characters")
    return value


Description = Annotated[str, Field(max_length=MAX_DESCRIPTION), AfterValidator(_no_nul)]
Attributes = Annotated[
    dict[str, Any],
    AfterValidator(_bounded_attributes),
    Field(description=f"free JSON object, at most {MAX_ATTRIBUTES_BYTES} bytes as JSON"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- products ------------------------------------------------------------------------------


class ProductCreate(_Strict):
    name: RegistryName
    description: Description = ""
    attributes: Attributes = Field(default_factory=dict)


def not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may not be null; leave the field out to keep its value")
    return value


class ProductUpdate(_Strict):
    """Only the fields sent change; none of them may be null."""

    name: RegistryName | None = Field(default=None, description="rename the product")
    description: Description | None = None
    attributes: Attributes | None = Field(default=None, description="replaces the whole object")

    _present = field_validator("name", "description", "attributes", mode="before")(not_null)


class ProductPublic(PublicModel):
    name: str
    description: str
    attributes: dict[str, Any]
    created_at: Timestamp
    updated_at: Timestamp


class ProductList(BaseModel):
    items: list[ProductPublic]
    next: str | None = Field(default=None, description="cursor of the next page, if any")


# -- cohorts -------------------------------------------------------------------------------


class CohortCreate(_Strict):
    name: RegistryName
    product: RegistryName = Field(description="the product every device of the cohort has")
    description: Description = ""


class CohortUpdate(_Strict):
    """Only the fields sent change; none of them may be null. The product can change only
    while the cohort has no devices."""

    name: RegistryName | None = Field(default=None, description="rename the cohort")
    product: RegistryName | None = None
    description: Description | None = None

    _present = field_validator("name", "product", "description", mode="before")(not_null)


class CohortPublic(PublicModel):
    name: str
    product: str
    description: str
    created_at: Timestamp
    updated_at: Timestamp


class CohortList(BaseModel):
    items: list[CohortPublic]
    next: str | None = Field(default=None, description="cursor of the next page, if any")


# -- bulk import ---------------------------------------------------------------------------

ImportStatus = Literal["created", "updated", "unchanged", "error"]


class ImportRow(BaseModel):
    row: int = Field(description="CSV: line number in the file; JSON: 1-based list index")
    name: str | None = None
    status: ImportStatus
    error: str | None = Field(default=None, description="why the row failed, naming the field")


class ImportReport(BaseModel):
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    dry_run: bool = Field(default=False, description="true: nothing was written")
    rows: list[ImportRow] = Field(default_factory=list)
