"""Products through the REST API: CRUD, validation, paging, 409 while in use, audit,
roles and tenancy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cloud_asserts import assert_problem, error_fields
from cloud_testkit import Tenant
from fastapi import FastAPI
from sqlalchemy import select

from cloud.auth.apikeys import issue_key
from cloud.store.models import AuditEntry, Role

pytestmark = pytest.mark.integration

URL = "/api/v1/products"


async def audit_entries(app: FastAPI, org_id: int, resource_type: str) -> list[AuditEntry]:
    async with app.state.store.sessions() as session:
        stmt = (
            select(AuditEntry)
            .where(AuditEntry.org_id == org_id, AuditEntry.resource_type == resource_type)
            .order_by(AuditEntry.id)
        )
        return list((await session.execute(stmt)).scalars())


async def test_product_crud_is_audited(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post(
        URL,
        json={"name": "press-gw.v2", "description": "press line", "attributes": {"hw": 2}},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "press-gw.v2" and body["attributes"] == {"hw": 2}
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")

    fetched = await client.get(f"{URL}/press-gw.v2", headers=tenant.headers)
    assert fetched.json() == body

    changed = await client.patch(
        f"{URL}/press-gw.v2",
        json={"name": "press-gw.v3", "attributes": {"hw": 3, "fw": "1.0"}},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "press-gw.v3"
    assert changed.json()["description"] == "press line"  # not sent: kept
    assert changed.json()["attributes"] == {"hw": 3, "fw": "1.0"}
    assert_problem(await client.get(f"{URL}/press-gw.v2", headers=tenant.headers), 404)

    # a change that changes nothing writes nothing
    same = await client.patch(
        f"{URL}/press-gw.v3", json={"description": "press line"}, headers=tenant.headers
    )
    assert same.status_code == 200 and same.json()["updated_at"] == changed.json()["updated_at"]

    deleted = await client.delete(f"{URL}/press-gw.v3", headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await client.get(f"{URL}/press-gw.v3", headers=tenant.headers), 404,
                   "product 'press-gw.v3' not found")

    entries = await audit_entries(app, tenant.org_id, "product")
    assert [(e.action, e.resource_id) for e in entries] == [
        ("product.create", "press-gw.v2"),
        ("product.update", "press-gw.v3"),
        ("product.delete", "press-gw.v3"),
    ]
    create, update, delete = entries
    assert create.before is None and create.after is not None
    assert create.after["attributes"] == {"hw": 2}
    assert update.before is not None and update.after is not None
    assert update.before["name"] == "press-gw.v2" and update.after["name"] == "press-gw.v3"
    assert delete.before is not None and delete.after is None
    assert delete.actor_type == "api_key"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "p1", "colour": "red"}, "colour"),
        ({"name": "p1", "attributes": ["not", "an", "object"]}, "attributes"),
        ({"name": "p1", "description": 5}, "description"),
        ({"name": "x" * 129}, "name"),
        ({"name": "-starts-with-dash"}, "name"),
        ({"name": "has space"}, "name"),
        ({"name": "has/slash"}, "name"),
        ({"name": "p1", "description": "d" * 2001}, "description"),
        ({"name": "p1", "description": "nul\x00"}, "description"),
        ({"name": "p1", "attributes": {"blob": "x" * 17_000}}, "attributes"),
        ({}, "name"),
    ],
)
async def test_invalid_product_is_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, Any], field: str
) -> None:
    response = await client.post(URL, json=payload, headers=tenant.headers)
    body = assert_problem(response, 422, f"body field {field!r}")
    assert error_fields(body) == [field]
    assert (await client.get(URL, headers=tenant.headers)).json()["items"] == []


async def test_patch_validation_and_name_conflicts(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for name in ("a", "b"):
        assert (await client.post(URL, json={"name": name}, headers=tenant.headers)).is_success
    assert_problem(
        await client.post(URL, json={"name": "a"}, headers=tenant.headers), 409,
        "a product named 'a' already exists",
    )
    assert_problem(
        await client.patch(f"{URL}/a", json={"name": "b"}, headers=tenant.headers), 409,
        "a product named 'b' already exists",
    )
    body = assert_problem(
        await client.patch(f"{URL}/a", json={"name": None}, headers=tenant.headers), 422,
        "may not be null",
    )
    assert error_fields(body) == ["name"]
    body = assert_problem(
        await client.patch(f"{URL}/a", json={"id": 7}, headers=tenant.headers), 422
    )
    assert error_fields(body) == ["id"]
    assert_problem(
        await client.patch(f"{URL}/missing", json={"description": "x"}, headers=tenant.headers),
        404,
    )
    assert_problem(await client.get(f"{URL}/a%00", headers=tenant.headers), 422,
                   "path parameter 'product'")


async def test_products_are_listed_by_name_in_pages(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for name in ("e", "c", "a", "d", "b"):
        assert (await client.post(URL, json={"name": name}, headers=tenant.headers)).is_success
    names: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(URL, params=params, headers=tenant.headers)).json()
        names += [p["name"] for p in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert names == ["a", "b", "c", "d", "e"] and pages == 3
    assert_problem(await client.get(f"{URL}?cursor=%%%", headers=tenant.headers), 422,
                   "malformed cursor")


async def test_deleting_a_product_in_use_is_409_naming_how_many(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert (await client.post(URL, json={"name": "p"}, headers=tenant.headers)).is_success
    cohort = await client.post(
        "/api/v1/cohorts", json={"name": "early", "product": "p"}, headers=tenant.headers
    )
    assert cohort.status_code == 201, cohort.text
    for name in ("gw1", "gw2"):
        device = await client.post(
            "/api/v1/devices", json={"name": name, "product": "p"}, headers=tenant.headers
        )
        assert device.status_code == 201, device.text

    body = assert_problem(
        await client.delete(f"{URL}/p", headers=tenant.headers), 409,
        "still has 1 cohort(s) and 2 device(s)",
    )
    assert body["cohorts"] == 1 and body["devices"] == 2
    assert (await client.get(f"{URL}/p", headers=tenant.headers)).status_code == 200

    # once nothing refers to it, it goes
    assert (await client.delete("/api/v1/cohorts/early", headers=tenant.headers)).status_code == 204
    for name in ("gw1", "gw2"):
        moved = await client.patch(
            f"/api/v1/devices/{name}", json={"product": None}, headers=tenant.headers
        )
        assert moved.status_code == 200 and moved.json()["product"] is None
    assert (await client.delete(f"{URL}/p", headers=tenant.headers)).status_code == 204


async def test_viewer_reads_products_but_cannot_change_them(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert (await client.post(URL, json={"name": "p"}, headers=tenant.headers)).is_success
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {viewer.secret}"}
    assert (await client.get(URL, headers=headers)).json()["items"][0]["name"] == "p"
    assert (await client.get(f"{URL}/p", headers=headers)).status_code == 200
    assert_problem(await client.post(URL, json={"name": "q"}, headers=headers), 403,
                   "needs role 'admin'")
    assert_problem(await client.patch(f"{URL}/p", json={}, headers=headers), 403)
    assert_problem(await client.delete(f"{URL}/p", headers=headers), 403)


async def test_other_orgs_products_are_404_and_untouched(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await client.post(
        URL, json={"name": "shared-name", "description": "globex's"},
        headers=other_tenant.headers,
    )
    assert theirs.status_code == 201
    url = f"{URL}/shared-name"
    assert_problem(await client.get(url, headers=tenant.headers), 404, "not found")
    assert_problem(
        await client.patch(url, json={"description": "mine"}, headers=tenant.headers), 404
    )
    assert_problem(await client.delete(url, headers=tenant.headers), 404)
    assert (await client.get(URL, headers=tenant.headers)).json()["items"] == []
    assert (await client.get(url, headers=other_tenant.headers)).json() == theirs.json()
    # names are unique per org only
    mine = await client.post(URL, json={"name": "shared-name"}, headers=tenant.headers)
    assert mine.status_code == 201
    assert await audit_entries(app, tenant.org_id, "product") != []
    assert [e.action for e in await audit_entries(app, other_tenant.org_id, "product")] == [
        "product.create"
    ]
