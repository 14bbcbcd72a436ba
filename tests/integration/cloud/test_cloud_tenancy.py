"""Tenant isolation, exhaustively: for every route of the OpenAPI schema, an owner of
org A aims at org B's objects — read, list, change, delete — and gets 404 (never 403,
which would confirm the object exists), and org B's rows are byte-for-byte unchanged.

Routes are enumerated from the schema, so a new route is covered without editing this
test (``tenancy_testkit`` fails loudly if it cannot build a request for it).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from cloud_testkit import Tenant
from fastapi import FastAPI
from tenancy_testkit import PUBLIC, Population, operations, org_state, populate, request_for, send

pytestmark = pytest.mark.integration

def names_victims_objects(body: object, victim: Population) -> bool:
    text = json.dumps(body)
    refs = {k: v for k, v in victim.params.items() if k in ("product", "cohort", "ca_id")}
    return any(f'"{value}"' in text or f": {value}" in text for value in refs.values())


def leaks(response: httpx.Response, victim: Population) -> list[str]:
    text = response.text
    markers = [victim.prefix, victim.tenant.org, victim.tenant.gateway]
    return [marker for marker in markers if re.search(rf"\b{re.escape(marker)}", text)]


async def test_no_route_reaches_another_orgs_objects(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    attacker = await populate(client, tenant, "aaa")
    victim = await populate(client, other_tenant, "zzz")
    before = await org_state(app.state.store, other_tenant.org_id)
    checked = 0

    for method, path, has_body in operations(app):
        if (method, path) in PUBLIC:
            continue
        aimed = request_for(method, path, has_body, victim)
        response = await send(client, aimed, attacker.headers)
        where = f"{method} {path} as org A on org B's objects"
        if "{" in path:
            assert response.status_code == 404, f"{where}: {response.status_code} {response.text}"
        elif method == "GET":
            assert response.status_code == 200, f"{where}: {response.text}"
            assert not leaks(response, victim), f"{where} shows B's data: {response.text}"
        elif names_victims_objects(aimed.json, victim):
            # a create in A's org whose body names B's objects must not resolve them
            assert response.status_code in (404, 422), f"{where}: {response.text}"
        else:  # acts on A's own org only (e.g. sign out): B's rows are checked below
            assert response.status_code < 500, f"{where}: {response.text}"
        checked += 1

    assert await org_state(app.state.store, other_tenant.org_id) == before
    assert checked >= 30
    # the victim still sees its own objects
    mine = await client.get(f"/api/v1/devices/{other_tenant.gateway}", headers=victim.headers)
    assert mine.status_code == 200
    assert attacker.params["device"] != victim.params["device"]
