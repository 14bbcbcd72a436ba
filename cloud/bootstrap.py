"""Provisioning without the API: create an org with an owner key and register gateways.

Used by ``fieldgate cloud init`` / ``gateway add`` and by demos and tests that run the
cloud in-process::

    async with open_store(url) as store:
        org = await bootstrap(store, "demo", gateways=["plant1"])
    org.api_key  # "fgk_..." (owner), shown once
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud.auth.apikeys import issue_key
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


async def bootstrap(
    store: Store,
    org: str,
    *,
    gateways: Sequence[str] = (),
    issue_owner_key: bool = True,
    key_name: str = "init",
) -> Bootstrapped:
    """Create ``org`` if needed, mint an owner key and register ``gateways`` (one
    transaction). Re-running is safe: the org and this org's gateways are reused, and
    another key is minted. Raises ``AlreadyExists`` when a gateway name belongs to
    another org."""
    async with store.sessions.begin() as session:
        row = await get_org_by_name(session, org) or await create_org(session, org)
        secret = None
        if issue_owner_key:
            secret = (await issue_key(session, row.id, name=key_name, role=Role.OWNER)).secret
        repo = DeviceRepository(session, row.id)
        added: list[str] = []
        for name in gateways:
            try:
                device, _ = await repo.get(name)
            except NotFound:
                await repo.create_gateway(name)
                added.append(name)
                continue
            if device.kind != "gateway":
                raise AlreadyExists(f"{name!r} exists in org {org!r} and is not a gateway")
        return Bootstrapped(org=row.name, org_id=row.id, api_key=secret, gateways=added)


async def add_gateway(store: Store, org: str, name: str) -> None:
    """Register gateway ``name`` in ``org``; ``NotFound`` for an unknown org, ``AlreadyExists``
    when the name is taken."""
    async with store.sessions.begin() as session:
        row = await get_org_by_name(session, org)
        if row is None:
            raise NotFound(f"org {org!r} not found (create it with 'fieldgate cloud init')")
        await DeviceRepository(session, row.id).create_gateway(name)
