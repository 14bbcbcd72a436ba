"""Provisioning without the API: create an org with an owner key and register gateways.

Used by ``fieldgate cloud init`` / ``gateway add`` and by demos and tests that run the
cloud in-process::

    async with open_store(url) as store:
        org = await bootstrap(store, "demo", gateways=["plant1"])
    org.api_key  # "fgk_..." (owner), shown once
    org.tokens["plant1"]  # "fgd_..." (the gateway's MQTT password), shown once
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cloud.auth.apikeys import issue_key
from cloud.auth.device_tokens import issue_token
from cloud.errors import AlreadyExists, NotFound
from cloud.store.db import Store
from cloud.store.devices import DeviceRepository
from cloud.store.models import Role
from cloud.store.orgs import create_org, get_org_by_name


@dataclass(frozen=True, slots=True)
class Bootstrapped:
    org: str
    org_id: int
    api_key: str | None
    """A new key (role ``owner``), or None when none was requested."""
    gateways: list[str]
    """Gateways registered by this call (already registered ones are not repeated)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """A new device token (``fgd_…``) per gateway named in the call, registered now or
    before, when tokens were requested: the gateway's MQTT password (username = its
    name) and HTTP/CoAP credential. Shown once."""


async def bootstrap(
    store: Store,
    org: str,
    *,
    gateways: Sequence[str] = (),
    issue_owner_key: bool = True,
    key_name: str = "init",
    issue_gateway_tokens: bool = True,
) -> Bootstrapped:
    """Create ``org`` if needed, mint an owner key, register ``gateways`` and issue each
    a device token (one transaction). Re-running is safe: the org and this org's gateways
    are reused, and another key and tokens are minted. Raises ``AlreadyExists`` when a
    gateway name belongs to another org."""
    async with store.sessions.begin() as session:
        row = await get_org_by_name(session, org) or await create_org(session, org)
        secret = None
        if issue_owner_key:
            secret = (await issue_key(session, row.id, name=key_name, role=Role.OWNER)).secret
        repo = DeviceRepository(session, row.id)
        added: list[str] = []
        tokens: dict[str, str] = {}
        for name in gateways:
            try:
                device, _ = await repo.get(name)
            except NotFound:
                device = await repo.create_gateway(name)
                added.append(name)
            else:
                if device.kind != "gateway":
                    raise AlreadyExists(f"{name!r} exists in org {org!r} and is not a gateway")
            if issue_gateway_tokens:
                tokens[name] = (await issue_token(session, device, name=key_name)).secret
        return Bootstrapped(
            org=row.name, org_id=row.id, api_key=secret, gateways=added, tokens=tokens
        )


async def add_gateway(store: Store, org: str, name: str) -> str:
    """Register gateway ``name`` in ``org`` and return its new device token (``fgd_…``,
    shown once); ``NotFound`` for an unknown org, ``AlreadyExists`` when the name is
    taken."""
    async with store.sessions.begin() as session:
        row = await get_org_by_name(session, org)
        if row is None:
            raise NotFound(f"org {org!r} not found (create it with 'fieldgate cloud init')")
        device = await DeviceRepository(session, row.id).create_gateway(name)
        return (await issue_token(session, device, name="gateway add")).secret
