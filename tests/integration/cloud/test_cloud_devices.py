"""The device registry through the REST API: registration of gateways and field devices
with labels/attributes/product/cohort, changes, filters, deletion with cascade, audit,
roles and tenancy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from cloud_asserts import assert_problem, error_fields, post
from cloud_testkit import T0, Tenant, make_batch
from fastapi import FastAPI
from sqlalchemy import func, select

from cloud.auth.apikeys import issue_key
from cloud.contract import GatewayStatus
from cloud.ingest.service import IngestService
from cloud.store.models import AuditEntry, Device, Latest, Point, Role

pytestmark = pytest.mark.integration

URL = "/api/v1/devices"


async def names(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> list[str]:
    response = await client.get(URL, params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return [d["name"] for d in response.json()["items"]]


async def audit_of(app: FastAPI, org_id: int, action: str) -> list[AuditEntry]:
    async with app.state.store.sessions() as session:
        stmt = select(AuditEntry).where(
            AuditEntry.org_id == org_id, AuditEntry.action == action
        ).order_by(AuditEntry.id)
        return list((await session.execute(stmt)).scalars())


async def count(app: FastAPI, model: Any, *where: Any) -> int:
    async with app.state.store.sessions() as session:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await session.execute(stmt)).scalar_one())


@pytest.fixture
async def catalogue(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Products ``press`` (cohorts ``early``, ``late``) and ``pump`` (cohort ``pilot``)."""
    await post(client, tenant, "products", name="press")
    await post(client, tenant, "products", name="pump")
    await post(client, tenant, "cohorts", name="early", product="press")
    await post(client, tenant, "cohorts", name="late", product="press")
    await post(client, tenant, "cohorts", name="pilot", product="pump")


@pytest.fixture
def ingest(app: FastAPI) -> IngestService:
    service: IngestService = app.state.ingest
    return service


# -- registration --------------------------------------------------------------------------


async def test_register_gateway_and_field_device_with_registry_fields(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    gateway = await post(
        client, tenant, "devices", name="plant7", product="press", cohort="early",
        labels=["line=3", "eu", "eu"], attributes={"site": {"city": "Berlin"}, "floor": 2},
        description="press line 7",
    )
    assert gateway["kind"] == "gateway" and gateway["parent"] is None
    assert gateway["product"] == "press" and gateway["cohort"] == "early"
    assert gateway["labels"] == ["line=3", "eu"]  # a set: the repeat is dropped
    assert gateway["attributes"] == {"site": {"city": "Berlin"}, "floor": 2}
    assert gateway["description"] == "press line 7"
    assert gateway["revoked_at"] is None and gateway["online"] is None
    assert gateway["updated_at"].endswith("Z")

    field = await post(
        client, tenant, "devices", kind="field", parent="plant7", name="plant7.pump1",
        product="pump", labels=["water"],
    )
    assert field["kind"] == "field" and field["parent"] == "plant7"
    assert field["product"] == "pump" and field["cohort"] is None
    assert (await client.get(f"{URL}/plant7.pump1", headers=tenant.headers)).json() == field

    entries = await audit_of(app, tenant.org_id, "device.create")
    assert [e.resource_id for e in entries] == ["plant7", "plant7.pump1"]
    assert entries[0].before is None and entries[0].after == gateway


@pytest.mark.parametrize(
    ("payload", "field", "detail"),
    [
        ({"name": "has.dot"}, "name", "no dot"),
        ({"name": "gw", "parent": "plant1"}, "parent", "a gateway has none"),
        ({"kind": "field", "name": "plant1.p"}, "parent", "needs its gateway"),
        ({"kind": "field", "parent": "plant1", "name": "other.p"}, "name",
         "is named 'plant1.<device>'"),
        ({"kind": "field", "parent": "plant1", "name": "plant1"}, "name", "'{gateway}.{device}'"),
        ({"kind": "robot", "name": "gw"}, "kind", "Input should be"),
        ({"name": "gw", "labels": ["x" * 65]}, "labels.0", "at most 64"),
        ({"name": "gw", "labels": ["a;b"]}, "labels.0", "pattern"),
        ({"name": "gw", "labels": [f"l{i}" for i in range(33)]}, "labels", "at most 32"),
        ({"name": "gw", "labels": "eu"}, "labels", "valid list"),
        ({"name": "gw", "attributes": {"x": "y" * 17_000}}, "attributes", "at most 16384"),
        ({"name": "gw", "description": "d" * 2001}, "description", "at most 2000"),
        ({"name": "gw", "description": "a\x00b"}, "description", "may not contain NUL"),
        ({"name": "gw\x00"}, "name", "no dot"),
        ({"name": "gw", "owner": "me"}, "owner", "Extra inputs"),
        ({"name": "gw", "product": "no such/name"}, "product", "pattern"),
    ],
)
async def test_invalid_device_is_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, Any], field: str, detail: str
) -> None:
    body = assert_problem(await client.post(URL, json=payload, headers=tenant.headers), 422,
                          detail)
    assert error_fields(body) == [field]
    assert await names(client, tenant) == ["plant1"]


@pytest.mark.parametrize(
    ("payload", "field", "detail"),
    [
        ({"name": "gw", "product": "nope"}, "product", "no product named 'nope'"),
        ({"name": "gw", "product": "theirs"}, "product", "no product named 'theirs'"),
        ({"name": "gw", "cohort": "early"}, "cohort",
         "cohort 'early' belongs to product 'press' and the device has no product"),
        ({"name": "gw", "product": "pump", "cohort": "early"}, "cohort",
         "cohort 'early' belongs to product 'press', not to the device's product 'pump'"),
        ({"name": "gw", "product": "press", "cohort": "nope"}, "cohort", "no cohort named"),
        ({"kind": "field", "parent": "ghost", "name": "ghost.p"}, "parent",
         "no gateway named 'ghost'"),
        ({"kind": "field", "parent": "mill1", "name": "mill1.p"}, "parent",
         "no gateway named 'mill1'"),
    ],
)
async def test_unknown_references_are_422_naming_the_field(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    catalogue: None,
    payload: dict[str, Any],
    field: str,
    detail: str,
) -> None:
    await post(client, other_tenant, "products", name="theirs")
    body = assert_problem(await client.post(URL, json=payload, headers=tenant.headers), 422,
                          detail)
    assert error_fields(body) == [field]
    assert await names(client, tenant) == ["plant1"]


async def test_attributes_keep_big_integers_and_refuse_nan(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    big = 2**70
    attributes = {"serial": big, "odd\x00key": "odd\x00value"}
    created = await post(client, tenant, "devices", name="gw", attributes=attributes)
    assert created["attributes"] == attributes
    assert (await client.get(f"{URL}/gw", headers=tenant.headers)).json() == created
    body = assert_problem(
        await client.patch(
            f"{URL}/gw", content=b'{"attributes": {"x": NaN}}',
            headers={**tenant.headers, "Content-Type": "application/json"},
        ),
        422, "numbers must be finite",
    )
    assert error_fields(body) == ["attributes"]


async def test_field_device_names_are_unique(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry("plant1", make_batch(0, [("pump1", "flow", T0, 1)]))
    again = await client.post(
        URL, json={"kind": "field", "parent": "plant1", "name": "plant1.pump1"},
        headers=tenant.headers,
    )
    assert_problem(again, 409, "already registered")


# -- changes -------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_sent(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    url = f"{URL}/plant1"
    original = (await client.get(url, headers=tenant.headers)).json()
    assert original["product"] is None and original["labels"] == []

    changed = await client.patch(
        url,
        json={"labels": ["eu"], "attributes": {"floor": 1}, "product": "press", "cohort": "late"},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["labels"], body["attributes"]) == (["eu"], {"floor": 1})
    assert (body["product"], body["cohort"], body["description"]) == ("press", "late", "")
    assert body["updated_at"] is not None and body["created_at"] == original["created_at"]

    described = (await client.patch(
        url, json={"description": "hall 2"}, headers=tenant.headers
    )).json()
    assert described["labels"] == ["eu"] and described["cohort"] == "late"

    # moving to another product needs a cohort of that product (or none)
    body = assert_problem(
        await client.patch(url, json={"product": "pump"}, headers=tenant.headers), 422,
        "the device is in cohort 'late' of product 'press'",
    )
    assert error_fields(body) == ["product"]
    body = assert_problem(
        await client.patch(url, json={"cohort": "pilot"}, headers=tenant.headers), 422,
        "cohort 'pilot' belongs to product 'pump'",
    )
    assert error_fields(body) == ["cohort"]
    moved = (await client.patch(
        url, json={"product": "pump", "cohort": "pilot"}, headers=tenant.headers
    )).json()
    assert (moved["product"], moved["cohort"]) == ("pump", "pilot")

    # null clears product and cohort; the other fields may not be null
    cleared = (await client.patch(
        url, json={"product": None, "cohort": None}, headers=tenant.headers
    )).json()
    assert (cleared["product"], cleared["cohort"]) == (None, None)
    for field in ("labels", "attributes", "description"):
        body = assert_problem(
            await client.patch(url, json={field: None}, headers=tenant.headers), 422,
            "may not be null",
        )
        assert error_fields(body) == [field]
    body = assert_problem(
        await client.patch(url, json={"name": "renamed"}, headers=tenant.headers), 422
    )
    assert error_fields(body) == ["name"]

    # a change that changes nothing is not written or audited
    updates = len(await audit_of(app, tenant.org_id, "device.update"))
    same = await client.patch(url, json={"labels": ["eu"]}, headers=tenant.headers)
    assert same.json()["updated_at"] == cleared["updated_at"]
    entries = await audit_of(app, tenant.org_id, "device.update")
    assert len(entries) == updates == 4
    assert entries[0].before is not None and entries[0].after is not None
    assert entries[0].before["labels"] == [] and entries[0].after["labels"] == ["eu"]
    assert entries[-1].after is not None and entries[-1].after["product"] is None


async def test_online_state_still_comes_from_gateway_status(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    status = GatewayStatus.model_validate(
        {"state": "online", "ts": T0, "version": "1.2.3", "devices": {"pump1": True}}
    )
    assert await ingest.handle_status("plant1", status)
    await client.patch(f"{URL}/plant1", json={"labels": ["eu"]}, headers=tenant.headers)
    body = (await client.get(f"{URL}/plant1", headers=tenant.headers)).json()
    assert body["online"] is True and body["status"]["version"] == "1.2.3"
    assert body["labels"] == ["eu"]


# -- listing -------------------------------------------------------------------------------


async def test_list_filters_by_product_cohort_label_and_online(
    client: httpx.AsyncClient, tenant: Tenant, catalogue: None, ingest: IngestService
) -> None:
    await post(client, tenant, "devices", name="a1", product="press", cohort="early",
               labels=["eu", "line=1"])
    await post(client, tenant, "devices", name="a2", product="press", cohort="late",
               labels=["eu"])
    await post(client, tenant, "devices", name="a3", product="press", labels=["us", "line=1"])
    await post(client, tenant, "devices", name="b1", product="pump", cohort="pilot")
    assert await ingest.handle_status("a1", GatewayStatus(state="online", ts=T0))
    assert await ingest.handle_status("a2", GatewayStatus(state="offline", ts=T0))

    assert await names(client, tenant, product="press") == ["a1", "a2", "a3"]
    assert await names(client, tenant, cohort="late") == ["a2"]
    assert await names(client, tenant, product="press", cohort="pilot") == []
    assert await names(client, tenant, label="eu") == ["a1", "a2"]
    assert await names(client, tenant, label=["eu", "line=1"]) == ["a1"]
    assert await names(client, tenant, label="nobody") == []
    assert await names(client, tenant, online="true") == ["a1"]
    # false: reported offline or never reported
    assert await names(client, tenant, online="false") == ["a2", "a3", "b1", "plant1"]
    assert await names(client, tenant, online="false", label="eu") == ["a2"]

    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"product": "press", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(URL, params=params, headers=tenant.headers)).json()
        pages.append([d["name"] for d in page["items"]])
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == [["a1", "a2"], ["a3"]]

    for params, field in (({"product": "nope"}, "product"), ({"cohort": "nope"}, "cohort")):
        body = assert_problem(await client.get(URL, params=params, headers=tenant.headers), 422,
                              "no ")
        assert error_fields(body) == [field]
    assert_problem(await client.get(URL, params={"label": "x" * 65}, headers=tenant.headers),
                   422, "query parameter 'label")
    for param in ("product", "cohort", "parent", "label"):
        assert_problem(
            await client.get(URL, params={param: "a\x00"}, headers=tenant.headers), 422,
            f"query parameter '{param}",
        )
    assert_problem(await client.get(f"{URL}/a%00b", headers=tenant.headers), 422,
                   "path parameter 'device'")


# -- deletion ------------------------------------------------------------------------------


async def test_delete_gateway_removes_field_devices_and_telemetry(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    await post(client, tenant, "devices", name="gw2")
    await ingest.ingest_telemetry(
        "gw2", make_batch(0, [("pump1", "flow", T0, 1), ("valve", "open", T0, True)])
    )
    await ingest.ingest_telemetry("plant1", make_batch(0, [("pump1", "flow", T0, 5)]))
    assert await names(client, tenant, parent="gw2") == ["gw2.pump1", "gw2.valve"]

    response = await client.delete(f"{URL}/gw2", headers=tenant.headers)
    assert response.status_code == 204, response.text
    for name in ("gw2", "gw2.pump1", "gw2.valve"):
        assert_problem(await client.get(f"{URL}/{name}", headers=tenant.headers), 404)
    assert await names(client, tenant) == ["plant1", "plant1.pump1"]
    assert await count(app, Device, Device.name.like("gw2%")) == 0
    # the other gateway's telemetry is untouched
    assert await count(app, Point) == 1 and await count(app, Latest) == 1

    (entry,) = await audit_of(app, tenant.org_id, "device.delete")
    assert entry.resource_id == "gw2" and entry.after is None
    assert entry.before is not None
    assert entry.before["field_devices"] == ["gw2.pump1", "gw2.valve"]

    # the name is free again
    assert (await post(client, tenant, "devices", name="gw2"))["name"] == "gw2"


async def test_delete_field_device(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry(
        "plant1", make_batch(0, [("pump1", "flow", T0, 1), ("pump2", "flow", T0, 2)])
    )
    response = await client.delete(f"{URL}/plant1.pump1", headers=tenant.headers)
    assert response.status_code == 204, response.text
    assert await names(client, tenant) == ["plant1", "plant1.pump2"]
    assert await count(app, Point) == 1 and await count(app, Latest) == 1
    assert_problem(await client.delete(f"{URL}/plant1.pump1", headers=tenant.headers), 404)


# -- roles and tenancy ---------------------------------------------------------------------


async def test_viewer_reads_devices_but_cannot_change_them(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {viewer.secret}"}
    assert (await client.get(f"{URL}/plant1", headers=headers)).status_code == 200
    assert_problem(await client.post(URL, json={"name": "gw"}, headers=headers), 403)
    assert_problem(await client.patch(f"{URL}/plant1", json={}, headers=headers), 403)
    assert_problem(await client.delete(f"{URL}/plant1", headers=headers), 403)
    assert (await client.get(f"{URL}/plant1", headers=headers)).status_code == 200


async def test_other_orgs_devices_are_404_on_every_route_and_untouched(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry("mill1", make_batch(0, [("saw", "rpm", T0, 1)]))
    await post(client, tenant, "products", name="p")
    for name in ("mill1", "mill1.saw"):
        url = f"{URL}/{name}"
        before = (await client.get(url, headers=other_tenant.headers)).json()
        assert_problem(await client.get(url, headers=tenant.headers), 404, "not found")
        assert_problem(
            await client.patch(url, json={"labels": ["x"]}, headers=tenant.headers), 404
        )
        assert_problem(
            await client.patch(url, json={"product": "p"}, headers=tenant.headers), 404
        )
        assert_problem(await client.delete(url, headers=tenant.headers), 404)
        assert (await client.get(url, headers=other_tenant.headers)).json() == before
    assert await names(client, tenant) == ["plant1"]
    assert await names(client, tenant, parent="mill1") == []
