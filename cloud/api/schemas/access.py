"""The org, users, console sessions, API keys and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from cloud.api.schemas.common import PublicModel, Timestamp
from cloud.auth.passwords import MAX_LENGTH, MIN_LENGTH
from cloud.auth.principal import ActorType
from cloud.store.models import Role


def _email(value: str) -> str:
    value = value.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("expected an e-mail address like name@example.com")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(_email)]
Password = Annotated[
    str,
    Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description=f"{MIN_LENGTH} to {MAX_LENGTH} characters",
    ),
]
DisplayName = Annotated[str, Field(max_length=128)]
OrgName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w .-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- org -----------------------------------------------------------------------------------


class OrgPublic(PublicModel):
    id: int
    name: str
    created_at: Timestamp


class OrgUpdate(_Strict):
    name: OrgName | None = None


# -- users and sign-in ---------------------------------------------------------------------


class UserCreate(_Strict):
    email: Email
    name: DisplayName = ""
    password: Password
    role: Role = Role.VIEWER


class UserUpdate(_Strict):
    """Fields to change; absent fields stay as they are."""

    name: DisplayName | None = None
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = Field(default=None, description="true: the user cannot sign in")


class UserPublic(PublicModel):
    id: int
    email: str
    name: str
    role: Role
    created_at: Timestamp
    last_login_at: Timestamp | None = None
    disabled_at: Timestamp | None = None


class Login(_Strict):
    email: Annotated[str, Field(min_length=1, max_length=254, pattern=r"^[^\x00-\x1f]+$")]
    password: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]


class LoginResult(BaseModel):
    token: str = Field(description="session token 'fgs_...': send as 'Authorization: Bearer'")
    expires_at: Timestamp
    user: UserPublic


class PasswordChange(_Strict):
    current_password: Annotated[str, Field(min_length=1, max_length=MAX_LENGTH)]
    new_password: Password


class Me(BaseModel):
    """Who the caller is."""

    org: OrgPublic
    role: Role
    actor_type: ActorType
    actor_id: str
    actor_name: str


# -- API keys ------------------------------------------------------------------------------


class ApiKeyCreate(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role = Role.VIEWER
    expires_at: datetime | None = Field(
        default=None, description="ISO-8601 with offset; absent: the key does not expire"
    )
    rate_limit: Annotated[float, Field(gt=0, le=100_000)] | None = Field(
        default=None, description="requests per second for this key; absent: the node default"
    )


class ApiKeyPublic(PublicModel):
    id: int
    name: str
    prefix: str
    role: Role
    created_at: Timestamp
    created_by: str | None = None
    expires_at: Timestamp | None = None
    rate_limit: float | None = None
    last_used_at: Timestamp | None = None
    revoked_at: Timestamp | None = None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown once, store it now")


# -- audit ---------------------------------------------------------------------------------


class AuditEntryPublic(PublicModel):
    id: int
    at: Timestamp
    actor_type: ActorType
    actor_id: str | None
    actor_name: str
    action: str
    resource_type: str
    resource_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntryPublic]
    next: str | None = Field(default=None, description="cursor of the next (older) page")
