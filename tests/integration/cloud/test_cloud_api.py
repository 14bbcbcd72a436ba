"""The REST API: authentication, tenancy, devices, latest, telemetry pages, delivery."""

from __future__ import annotations

import httpx
import pytest
from cloud_asserts import assert_problem
from cloud_testkit import T0, Tenant, make_batch
from fastapi import FastAPI

from cloud.auth.apikeys import issue_key
from cloud.ingest.service import IngestService
from cloud.store.models import Role

pytestmark = pytest.mark.integration


@pytest.fixture
def ingest(app: FastAPI) -> IngestService:
    service: IngestService = app.state.ingest
    return service


# -- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing credentials"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "must be 'Bearer <API key or session>'"),
        ({"Authorization": "Bearer nope"}, "malformed API key"),
        ({"Authorization": "Bearer fgk_" + "x" * 43}, "invalid API key"),
    ],
)
async def test_missing_or_invalid_key_is_401_problem(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str], detail: str
) -> None:
    response = await client.get("/api/v1/devices", headers=headers)
    assert_problem(response, 401, detail)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_revoked_key_is_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "ci", "role": "viewer"}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("fgk_") and created.json()["prefix"] == key[:12]
    viewer = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/api/v1/devices", headers=viewer)).status_code == 200

    key_url = f"/api/v1/api-keys/{created.json()['id']}"
    revoked = await client.delete(key_url, headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]

    assert_problem(await client.get("/api/v1/devices", headers=viewer), 401, "revoked")


async def test_roles_are_enforced(app: FastAPI, client: httpx.AsyncClient, tenant: Tenant) -> None:
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {viewer.secret}"}
    response = await client.post("/api/v1/devices", json={"name": "gw9"}, headers=headers)
    assert_problem(response, 403, "needs role 'admin'")
    response = await client.post(
        "/api/v1/devices/plant1/commands", json={"action": "read", "tag": "x"}, headers=headers
    )
    assert_problem(response, 403, "needs role 'operator'")


async def test_last_used_at_is_recorded(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.get("/api/v1/devices", headers=tenant.headers)
    keys = (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    assert keys[0]["last_used_at"] is not None
    assert "key_hash" not in keys[0] and "key" not in keys[0]


# -- tenancy and devices ---------------------------------------------------------------------


async def test_other_orgs_devices_are_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry("mill1", make_batch(0, [("saw", "rpm", T0, 1)]))
    for path in (
        "/api/v1/devices/mill1",
        "/api/v1/devices/mill1.saw/latest",
        "/api/v1/devices/mill1.saw/telemetry",
        "/api/v1/devices/mill1/delivery?from_seq=0&to_seq=10",
    ):
        assert_problem(await client.get(path, headers=tenant.headers), 404, "not found")
    listed = (await client.get("/api/v1/devices", headers=tenant.headers)).json()
    assert [d["name"] for d in listed["items"]] == ["plant1"]
    # the owner sees its own
    assert (await client.get("/api/v1/devices/mill1.saw", headers=other_tenant.headers)).json()[
        "parent"
    ] == "mill1"


async def test_register_gateway(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await client.post(
        "/api/v1/devices", json={"name": "plant2", "kind": "gateway"}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "plant2" and body["kind"] == "gateway" and body["online"] is None
    assert body["created_at"].endswith("Z")

    again = await client.post("/api/v1/devices", json={"name": "plant2"}, headers=tenant.headers)
    assert_problem(again, 409, "already registered")
    # gateway names are global: the topic names the gateway
    taken = await client.post(
        "/api/v1/devices", json={"name": "plant2"}, headers=other_tenant.headers
    )
    assert_problem(taken, 409, "already registered")


async def test_validation_errors_are_problems_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    bad_name = await client.post(
        "/api/v1/devices", json={"name": "has.dot"}, headers=tenant.headers
    )
    body = assert_problem(bad_name, 422, "body field 'name'")
    assert body["errors"][0]["field"] == "name"  # type: ignore[index]
    bad_limit = await client.get("/api/v1/devices?limit=0", headers=tenant.headers)
    assert_problem(bad_limit, 422, "query parameter 'limit'")
    bad_cursor = await client.get("/api/v1/devices?cursor=%%%", headers=tenant.headers)
    body = assert_problem(bad_cursor, 422, "malformed cursor")
    assert body["errors"] == [{"field": "cursor", "message": body["detail"]}]
    missing = await client.get("/api/v1/devices/plant1/delivery?from_seq=1", headers=tenant.headers)
    assert_problem(missing, 422, "query parameter 'to_seq'")
    unknown_route = await client.get("/api/v1/nothing", headers=tenant.headers)
    assert_problem(unknown_route, 404, "no route")


async def test_device_list_filters_and_pages(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry(
        "plant1", make_batch(0, [(f"dev{i}", "t", T0, i) for i in range(5)])
    )
    names: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"kind": "field", "parent": "plant1", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/devices", params=params, headers=tenant.headers)).json()
        names += [d["name"] for d in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert names == [f"plant1.dev{i}" for i in range(5)]
    gateways = await client.get("/api/v1/devices?kind=gateway", headers=tenant.headers)
    assert [d["name"] for d in gateways.json()["items"]] == ["plant1"]


# -- telemetry -----------------------------------------------------------------------------


async def test_latest_values(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    await ingest.ingest_telemetry(
        "plant1",
        make_batch(
            0,
            [
                ("pump1", "flow", T0 + 1, 1.25),
                ("pump1", "flow", T0 + 2, 2.5),
                ("pump1", "mode", T0 + 3, "auto"),
                ("pump1", "on", T0 + 4, True),
                ("pump1", "count", T0 + 5, 2**60),
                ("pump1", "fault", T0 + 6, None),
            ],
            q=[0, 0, 0, 1, 0, 2],
            why={3: "stale", 5: "timeout"},
        ),
    )
    response = await client.get("/api/v1/devices/plant1.pump1/latest", headers=tenant.headers)
    assert response.status_code == 200, response.text
    values = {v["tag"]: v for v in response.json()["values"]}
    assert values["flow"] == {
        "tag": "flow", "value": 2.5, "ts": "2026-01-01T00:00:00.002Z", "quality": "good",
        "reason": None,
    }
    assert values["mode"]["value"] == "auto"
    assert values["on"]["value"] is True and values["on"]["quality"] == "uncertain"
    assert values["on"]["reason"] == "stale"
    assert values["count"]["value"] == 2**60
    assert values["fault"]["value"] is None and values["fault"]["quality"] == "bad"


async def test_telemetry_pages_by_time(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    # two tags interleaved; same timestamps for both tags to exercise the (ts, seq) keyset
    readings = []
    for i in range(25):
        readings.append(("pump1", "flow", T0 + 1000 * i, float(i)))
        readings.append(("pump1", "temp", T0 + 1000 * i, i))
    await ingest.ingest_telemetry("plant1", make_batch(0, readings))

    seen: list[tuple[str, int]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(
            "/api/v1/devices/plant1.pump1/telemetry", params=params, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [(p["tag"], p["seq"]) for p in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 8 and len(seen) == 50 and len(set(seen)) == 50
    assert [s for _, s in seen] == list(range(50))

    # tag filter and [start, end) window
    response = await client.get(
        "/api/v1/devices/plant1.pump1/telemetry",
        params={"tag": "temp", "start": "2026-01-01T00:00:05Z", "end": "2026-01-01T00:00:08+00:00"},
        headers=tenant.headers,
    )
    items = response.json()["items"]
    assert [(p["value"], p["ts"]) for p in items] == [
        (5, "2026-01-01T00:00:05.000Z"), (6, "2026-01-01T00:00:06.000Z"),
        (7, "2026-01-01T00:00:07.000Z"),
    ]
    backwards = await client.get(
        "/api/v1/devices/plant1.pump1/telemetry",
        params={"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert_problem(backwards, 422, "'end' must be after 'start'")


async def test_delivery_counts_distinct_sequence_numbers(
    client: httpx.AsyncClient, tenant: Tenant, ingest: IngestService
) -> None:
    first = make_batch(0, [("p", "t", T0 + i, i) for i in range(100)])
    await ingest.ingest_telemetry("plant1", first)
    # a gap of 10 (100..109 lost), then 110..149, one of them delivered twice
    later = make_batch(110, [("p", "t", T0 + 110 + i, i) for i in range(40)])
    await ingest.ingest_telemetry("plant1", later)
    await ingest.ingest_telemetry("plant1", later)

    response = await client.get(
        "/api/v1/devices/plant1/delivery", params={"from_seq": 0, "to_seq": 149},
        headers=tenant.headers,
    )
    assert response.json() == {
        "gateway": "plant1", "from_seq": 0, "to_seq": 149, "expected": 150, "count": 140,
        "missing": 10, "min_seq": 0, "max_seq": 149,
    }
    empty = await client.get(
        "/api/v1/devices/plant1/delivery", params={"from_seq": 1000, "to_seq": 2000},
        headers=tenant.headers,
    )
    assert empty.json()["count"] == 0 and empty.json()["min_seq"] is None
    field = await client.get(
        "/api/v1/devices/plant1.p/delivery", params={"from_seq": 0, "to_seq": 1},
        headers=tenant.headers,
    )
    assert_problem(field, 409, "field device")


async def test_openapi_and_health(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/devices/{device}/commands" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200
    health = (await client.get("/api/v1/health")).json()
    assert health["status"] == "ok" and health["mqtt_connected"] is True
