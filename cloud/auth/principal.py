"""Who is acting: a :class:`Principal` (an API key or a signed-in user, resolved per
request) or an :class:`Actor` for work the cloud does on its own or on a device's behalf.
Both carry what the audit log records."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from cloud.auth.permissions import Permission, allowed
from cloud.errors import Forbidden
from cloud.store.models import Role


class ActorType(enum.StrEnum):
    USER = "user"
    API_KEY = "api_key"
    DEVICE = "device"
    SYSTEM = "system"


class AuditActor(Protocol):
    """What :func:`cloud.audit.record` needs to know about who acted."""

    @property
    def org_id(self) -> int: ...

    @property
    def actor_type(self) -> ActorType: ...

    @property
    def actor_id(self) -> str | None: ...

    @property
    def actor_name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Actor:
    """A non-human actor: ``Actor.system(org_id, "jit-registration")`` or a device."""

    org_id: int
    actor_type: ActorType
    actor_id: str | None
    actor_name: str

    @classmethod
    def system(cls, org_id: int, name: str) -> Actor:
        return cls(org_id, ActorType.SYSTEM, None, name)

    @classmethod
    def device(cls, org_id: int, device_id: int, name: str) -> Actor:
        return cls(org_id, ActorType.DEVICE, str(device_id), name)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API caller, scoped to one org with one role.

    ``rate_limit`` is the caller's own limit in requests per second (None: the node's
    default); ``limit_key`` names its rate-limit bucket.
    """

    org_id: int
    role: Role
    actor_type: ActorType
    actor_id: str
    actor_name: str
    rate_limit: float | None = None

    @property
    def limit_key(self) -> str:
        return f"{self.actor_type.value}:{self.actor_id}"

    @property
    def user_id(self) -> int | None:
        return int(self.actor_id) if self.actor_type is ActorType.USER else None

    def require(self, role: Role) -> None:
        """Raise :class:`Forbidden` unless this principal's role is at least ``role``."""
        if self.role.rank < role.rank:
            raise Forbidden(
                f"this action needs role {role.value!r}; the caller has {self.role.value!r}"
            )

    def require_permission(self, permission: Permission) -> None:
        if not allowed(self.role, permission):
            raise Forbidden(
                f"permission {permission.value!r} needs role "
                f"{permission.minimum_role.value!r}; the caller has {self.role.value!r}"
            )
