"""Cohorts through the REST API: CRUD, validation, product filter and paging, product
changes (409 with devices), delete detaching devices, audit, roles and tenancy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cloud_asserts import assert_problem, error_fields, post
from cloud_testkit import Tenant
from fastapi import FastAPI
from sqlalchemy import select

from cloud.auth.apikeys import issue_key
from cloud.store.models import AuditEntry, Role

pytestmark = pytest.mark.integration

URL = "/api/v1/cohorts"


async def test_cohort_crud_is_audited(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await post(client, tenant, "products", name="p1")
    await post(client, tenant, "products", name="p2")
    created = await post(client, tenant, "cohorts", name="early", product="p1",
                         description="first wave")
    assert created["product"] == "p1" and created["description"] == "first wave"
    assert (await client.get(f"{URL}/early", headers=tenant.headers)).json() == created

    changed = await client.patch(
        f"{URL}/early", json={"name": "wave-1", "product": "p2"}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "wave-1" and changed.json()["product"] == "p2"
    assert changed.json()["description"] == "first wave"
    assert_problem(await client.get(f"{URL}/early", headers=tenant.headers), 404)

    assert (await client.delete(f"{URL}/wave-1", headers=tenant.headers)).status_code == 204
    assert_problem(await client.get(f"{URL}/wave-1", headers=tenant.headers), 404,
                   "cohort 'wave-1' not found")

    async with app.state.store.sessions() as session:
        entries = list((await session.execute(
            select(AuditEntry).where(
                AuditEntry.org_id == tenant.org_id, AuditEntry.resource_type == "cohort"
            ).order_by(AuditEntry.id)
        )).scalars())
    assert [(e.action, e.resource_id) for e in entries] == [
        ("cohort.create", "early"), ("cohort.update", "wave-1"), ("cohort.delete", "wave-1"),
    ]
    assert entries[1].before is not None and entries[1].after is not None
    assert entries[1].before["product"] == "p1" and entries[1].after["product"] == "p2"
    assert entries[2].before is not None and entries[2].before["detached_devices"] == 0


@pytest.mark.parametrize(
    ("payload", "field", "detail"),
    [
        ({"name": "c", "product": "nope"}, "product", "no product named 'nope'"),
        ({"name": "c", "product": "theirs"}, "product", "no product named 'theirs'"),
        ({"name": "c"}, "product", "Field required"),
        ({"name": "c", "product": "p", "size": 3}, "size", "Extra inputs"),
        ({"name": "c" * 129, "product": "p"}, "name", "at most 128"),
        ({"name": "c", "product": "p", "description": ["x"]}, "description", "string"),
    ],
)
async def test_invalid_cohort_is_422_naming_the_field(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    payload: dict[str, Any],
    field: str,
    detail: str,
) -> None:
    await post(client, tenant, "products", name="p")
    await post(client, other_tenant, "products", name="theirs")
    body = assert_problem(await client.post(URL, json=payload, headers=tenant.headers), 422,
                          detail)
    assert error_fields(body) == [field]


async def test_cohorts_filter_by_product_and_page(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await post(client, tenant, "products", name="p1")
    await post(client, tenant, "products", name="p2")
    for index in range(5):
        await post(client, tenant, "cohorts", name=f"c{index}", product="p1" if index % 2 else "p2")
    await post(client, tenant, "cohorts", name="c9", product="p1")

    names: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"product": "p1", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(URL, params=params, headers=tenant.headers)).json()
        names += [c["name"] for c in page["items"]]
        assert all(c["product"] == "p1" for c in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert names == ["c1", "c3", "c9"]
    everything = (await client.get(URL, headers=tenant.headers)).json()["items"]
    assert [c["name"] for c in everything] == ["c0", "c1", "c2", "c3", "c4", "c9"]
    body = assert_problem(await client.get(f"{URL}?product=nope", headers=tenant.headers), 422,
                          "no product named 'nope'")
    assert error_fields(body) == ["product"]


async def test_changing_the_product_of_a_cohort_with_devices_is_409(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await post(client, tenant, "products", name="p1")
    await post(client, tenant, "products", name="p2")
    await post(client, tenant, "cohorts", name="early", product="p1")
    await post(client, tenant, "devices", name="gw1", product="p1", cohort="early")

    body = assert_problem(
        await client.patch(f"{URL}/early", json={"product": "p2"}, headers=tenant.headers),
        409, "cohort 'early' has 1 device(s) of product 'p1'",
    )
    assert body["devices"] == 1
    assert (await client.get(f"{URL}/early", headers=tenant.headers)).json()["product"] == "p1"
    # the same product, or other fields, are fine
    same = await client.patch(
        f"{URL}/early", json={"product": "p1", "description": "d"}, headers=tenant.headers
    )
    assert same.status_code == 200 and same.json()["description"] == "d"
    body = assert_problem(
        await client.patch(f"{URL}/early", json={"product": "nope"}, headers=tenant.headers),
        422, "no product named 'nope'",
    )
    assert error_fields(body) == ["product"]
    body = assert_problem(
        await client.patch(f"{URL}/early", json={"product": None}, headers=tenant.headers),
        422, "may not be null",
    )
    assert error_fields(body) == ["product"]


async def test_deleting_a_cohort_detaches_its_devices(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await post(client, tenant, "products", name="p1")
    await post(client, tenant, "cohorts", name="early", product="p1")
    await post(client, tenant, "cohorts", name="late", product="p1")
    before = await post(client, tenant, "devices", name="gw1", product="p1", cohort="early")
    await post(client, tenant, "devices", name="gw2", product="p1", cohort="late")

    assert (await client.delete(f"{URL}/early", headers=tenant.headers)).status_code == 204
    gw1 = (await client.get("/api/v1/devices/gw1", headers=tenant.headers)).json()
    assert gw1["cohort"] is None and gw1["product"] == "p1"
    assert gw1["updated_at"] > before["updated_at"]
    gw2 = (await client.get("/api/v1/devices/gw2", headers=tenant.headers)).json()
    assert gw2["cohort"] == "late"
    assert_problem(
        await client.get("/api/v1/devices?cohort=early", headers=tenant.headers), 422,
        "no cohort named 'early'",
    )


async def test_cohort_name_conflicts(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await post(client, tenant, "products", name="p")
    await post(client, tenant, "cohorts", name="a", product="p")
    await post(client, tenant, "cohorts", name="b", product="p")
    assert_problem(
        await client.post(URL, json={"name": "a", "product": "p"}, headers=tenant.headers),
        409, "a cohort named 'a' already exists",
    )
    assert_problem(
        await client.patch(f"{URL}/a", json={"name": "b"}, headers=tenant.headers),
        409, "a cohort named 'b' already exists",
    )


async def test_viewer_reads_cohorts_but_cannot_change_them(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await post(client, tenant, "products", name="p")
    await post(client, tenant, "cohorts", name="c", product="p")
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {viewer.secret}"}
    assert (await client.get(f"{URL}/c", headers=headers)).status_code == 200
    assert (await client.get(URL, headers=headers)).status_code == 200
    assert_problem(
        await client.post(URL, json={"name": "d", "product": "p"}, headers=headers), 403
    )
    assert_problem(await client.patch(f"{URL}/c", json={}, headers=headers), 403)
    assert_problem(await client.delete(f"{URL}/c", headers=headers), 403)


async def test_other_orgs_cohorts_are_404_and_untouched(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await post(client, other_tenant, "products", name="p")
    theirs = await post(client, other_tenant, "cohorts", name="c", product="p")
    await post(client, tenant, "products", name="mine")
    url = f"{URL}/c"
    assert_problem(await client.get(url, headers=tenant.headers), 404, "not found")
    assert_problem(
        await client.patch(url, json={"description": "x"}, headers=tenant.headers), 404
    )
    assert_problem(await client.delete(url, headers=tenant.headers), 404)
    assert (await client.get(URL, headers=tenant.headers)).json()["items"] == []
    assert_problem(
        await client.get(f"{URL}?product=p", headers=tenant.headers), 422, "no product"
    )
    assert (await client.get(url, headers=other_tenant.headers)).json() == theirs
