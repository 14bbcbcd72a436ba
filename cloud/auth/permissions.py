"""The permission table: what each role may do. Every route depends on exactly one
:class:`Permission` (see ``cloud.api.deps``); the README's table is generated from here
(``fieldgate cloud permissions``) and a test keeps the two equal."""

from __future__ import annotations

import enum

from cloud.store.models import Role


class Permission(enum.StrEnum):
    READ = "read"
    OPERATE = "operate"
    MANAGE_DEVICES = "manage_devices"
    MANAGE_IDENTITY = "manage_identity"
    MANAGE_ACCESS = "manage_access"
    READ_AUDIT = "read_audit"
    MANAGE_ORG = "manage_org"

    @property
    def minimum_role(self) -> Role:
        return MINIMUM_ROLE[self]

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self]


MINIMUM_ROLE: dict[Permission, Role] = {
    Permission.READ: Role.VIEWER,
    Permission.OPERATE: Role.OPERATOR,
    Permission.MANAGE_DEVICES: Role.ADMIN,
    Permission.MANAGE_IDENTITY: Role.ADMIN,
    Permission.MANAGE_ACCESS: Role.ADMIN,
    Permission.READ_AUDIT: Role.ADMIN,
    Permission.MANAGE_ORG: Role.OWNER,
}

DESCRIPTIONS: dict[Permission, str] = {
    Permission.READ: "read devices, telemetry, products, cohorts and the org",
    Permission.OPERATE: "send commands to gateways (write a tag, read now, reload config)",
    Permission.MANAGE_DEVICES: "create, change, import and delete devices, products, cohorts",
    Permission.MANAGE_IDENTITY: "certificate authorities, device certificates and tokens, "
    "device revocation",
    Permission.MANAGE_ACCESS: "users and API keys (never above the caller's own role)",
    Permission.READ_AUDIT: "read the audit log",
    Permission.MANAGE_ORG: "change the org itself",
}


def allowed(role: Role, permission: Permission) -> bool:
    return role.rank >= permission.minimum_role.rank
