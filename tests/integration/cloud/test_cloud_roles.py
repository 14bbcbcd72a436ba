"""Each role on each route against the permission table: below the route's minimum role
the answer is 403, at or above it never 401/403. The route → permission map is read from
the routes themselves (``cloud.api.route_permissions``), and the README's table must be
the one generated from it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cloud_testkit import Tenant
from fastapi import FastAPI
from tenancy_testkit import PUBLIC, operations, populate, request_for, send

from cloud.api.route_permissions import markdown_table, route_permissions
from cloud.auth.apikeys import issue_key
from cloud.store.models import Role

pytestmark = pytest.mark.integration

README = Path(__file__).parents[3] / "README.md"


def test_every_route_but_the_public_ones_needs_exactly_one_permission(app: FastAPI) -> None:
    routes = route_permissions(app)
    public = {(r.method, r.path) for r in routes if r.permission is None}
    assert public == PUBLIC
    assert len(routes) == len(operations(app))


def test_readme_permission_table_is_generated_from_the_routes(app: FastAPI) -> None:
    table = markdown_table(app)
    assert table in README.read_text(), (
        "README.md's permission tables are stale: regenerate with "
        "'fieldgate cloud permissions' and paste them"
    )


async def test_each_role_on_each_route(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    own = await populate(client, tenant, "own")
    async with app.state.store.sessions.begin() as session:
        keys = {
            role: (await issue_key(session, tenant.org_id, name=role.value, role=role)).secret
            for role in Role
        }
    has_body = {(m, p): b for m, p, b in operations(app)}
    checked = 0
    for route in route_permissions(app):
        if route.permission is None:
            continue
        request = request_for(route.method, route.path, has_body[(route.method, route.path)], own)
        for role in Role:  # weakest first: the denied calls run before any allowed change
            response = await send(client, request, {"Authorization": f"Bearer {keys[role]}"})
            where = f"{route.method} {route.path} as {role.value}"
            if role.rank < route.permission.minimum_role.rank:
                assert response.status_code == 403, f"{where}: {response.text}"
                assert route.permission.minimum_role.value in response.json()["detail"]
            else:
                assert response.status_code not in (401, 403), f"{where}: {response.text}"
            checked += 1
    assert checked >= 4 * 30
