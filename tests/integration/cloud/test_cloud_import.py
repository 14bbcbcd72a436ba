"""Bulk device import through the REST API: CSV and JSON, per-row report, create vs
upsert, dry run, atomic, malformed bodies, limits, audit, roles and tenancy."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from cloud_asserts import assert_problem
from cloud_testkit import Tenant
from fastapi import FastAPI
from sqlalchemy import func, select

from cloud.auth.apikeys import issue_key
from cloud.device_import import MAX_ROWS
from cloud.store.models import AuditEntry, Device, Role

pytestmark = pytest.mark.integration

URL = "/api/v1/devices/import"
CSV = {"Content-Type": "text/csv"}
JSON = {"Content-Type": "application/json"}


async def send(
    client: httpx.AsyncClient,
    tenant: Tenant,
    body: str | bytes | list[Any],
    *,
    expect: int = 200,
    **params: Any,
) -> Any:
    if isinstance(body, list):
        content, headers = orjson.dumps(body), JSON
    else:
        content, headers = (body.encode() if isinstance(body, str) else body), CSV
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}
    response = await client.post(
        URL, content=content, params=query, headers={**tenant.headers, **headers}
    )
    assert response.status_code == expect, response.text
    return response.json()


async def device(client: httpx.AsyncClient, tenant: Tenant, name: str) -> Any:
    response = await client.get(f"/api/v1/devices/{name}", headers=tenant.headers)
    return response.json() if response.status_code == 200 else None


async def device_count(app: FastAPI) -> int:
    async with app.state.store.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(Device))).scalar_one())


async def import_audit(app: FastAPI, org_id: int) -> list[AuditEntry]:
    async with app.state.store.sessions() as session:
        stmt = select(AuditEntry).where(
            AuditEntry.org_id == org_id, AuditEntry.action == "device.import"
        ).order_by(AuditEntry.id)
        return list((await session.execute(stmt)).scalars())


@pytest.fixture
async def catalogue(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for path, payload in (
        ("products", {"name": "press"}),
        ("products", {"name": "pump"}),
        ("cohorts", {"name": "early", "product": "press"}),
    ):
        response = await client.post(f"/api/v1/{path}", json=payload, headers=tenant.headers)
        assert response.status_code == 201, response.text


MIXED_CSV = (
    "name,kind,parent,product,cohort,labels,description,attr.site,attr.floor\n"
    "gw1,gateway,,press,early,eu;line=1,Press 1,berlin,2\n"
    "gw1.pump1,,,pump,,water,,,\n"             # kind and parent from the dotted name
    "gw2,,,press,nope,,,,\n"                   # unknown cohort
    "\n"                                       # blank lines are skipped
    'gw3,,,pump,early,"a;b",,,\n'              # cohort of another product
    "gw4,gateway,,,,bad label!,,,\n"           # label pattern
    "gw5,,,,,,,,\n"
    "gw5,,,,,,,,\n"                            # repeated name
    "ghost.x,field,ghost,,,,,,\n"              # unknown parent
    "gw6,too,many,fields,,,,,,,,\n"
    "plant1.valve,field,plant1,,,,,hall 2,\n"  # under the tenant's existing gateway
)


async def test_csv_import_reports_every_row(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    report = await send(client, tenant, MIXED_CSV)
    assert (report["created"], report["updated"], report["failed"]) == (4, 0, 6)
    assert report["dry_run"] is False
    rows = {(r["row"], r["name"]): r for r in report["rows"]}
    assert [(r["row"], r["name"], r["status"]) for r in report["rows"]] == [
        (2, "gw1", "created"),
        (3, "gw1.pump1", "created"),
        (4, "gw2", "error"),
        (6, "gw3", "error"),
        (7, "gw4", "error"),
        (8, "gw5", "created"),
        (9, "gw5", "error"),
        (10, "ghost.x", "error"),
        (11, None, "error"),
        (12, "plant1.valve", "created"),
    ]
    assert rows[(4, "gw2")]["error"] == "cohort: no cohort named 'nope'"
    assert rows[(6, "gw3")]["error"].startswith("cohort: cohort 'early' belongs to product")
    assert rows[(7, "gw4")]["error"].startswith("labels.0: String should match pattern")
    assert rows[(9, "gw5")]["error"] == "name: 'gw5' is already in row 8"
    assert rows[(10, "ghost.x")]["error"] == "parent: no gateway named 'ghost'"
    assert rows[(11, None)]["error"] == "12 fields where the header has 9"
    assert all(r["error"] is None for r in report["rows"] if r["status"] == "created")

    gw1 = await device(client, tenant, "gw1")
    assert (gw1["product"], gw1["cohort"], gw1["labels"]) == ("press", "early", ["eu", "line=1"])
    assert gw1["attributes"] == {"site": "berlin", "floor": "2"}
    assert gw1["description"] == "Press 1"
    pump = await device(client, tenant, "gw1.pump1")
    assert (pump["kind"], pump["parent"], pump["product"]) == ("field", "gw1", "pump")
    assert pump["attributes"] == {}
    assert (await device(client, tenant, "plant1.valve"))["attributes"] == {"site": "hall 2"}
    for name in ("gw2", "gw3", "gw4", "ghost.x"):
        assert await device(client, tenant, name) is None

    entries = await import_audit(app, tenant.org_id)
    assert [e.resource_id for e in entries] == ["gw1", "gw1.pump1", "gw5", "plant1.valve"]
    assert entries[0].before is None and entries[0].after == gw1


async def test_json_import_mixed_rows(
    client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    report = await send(client, tenant, [
        {"name": "j1", "product": "press", "labels": ["eu"], "attributes": {"n": 1}},
        {"name": "j1.sensor", "kind": "field", "parent": "j1"},
        {"name": "j2", "colour": "red"},
        {"name": "j3", "product": "nope"},
        "not an object",
        {"labels": ["x"]},
        {"name": "j4", "attributes": {"x": "y" * 17_000}},
        {"name": "j5\x00", "parent": "j\x00"},
        {"name": 5},
    ])
    assert [(r["row"], r["status"]) for r in report["rows"]] == [
        (1, "created"), (2, "created"), (3, "error"), (4, "error"), (5, "error"),
        (6, "error"), (7, "error"), (8, "error"), (9, "error"),
    ]
    errors = [r["error"] for r in report["rows"]]
    assert errors[2] == "colour: Extra inputs are not permitted"
    assert errors[3] == "product: no product named 'nope'"
    assert errors[4] == "expected an object with the fields of a device"
    assert errors[5] == "name: required"
    assert errors[6].startswith("attributes: at most 16384 bytes")
    assert errors[7].startswith("parent: String should match pattern")
    assert errors[8] == "name: required"
    assert (await device(client, tenant, "j1"))["attributes"] == {"n": 1}
    assert (await device(client, tenant, "j1.sensor"))["parent"] == "j1"


async def test_upsert_changes_only_the_given_fields_and_create_refuses_existing(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    first = "name,product,labels\nu1,press,eu\nu2,pump,\n"
    assert (await send(client, tenant, first))["created"] == 2
    # the same file again changes nothing
    again = await send(client, tenant, first)
    assert [r["status"] for r in again["rows"]] == ["unchanged", "unchanged"]
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)

    # columns left out are kept; an empty cell clears
    changed = await send(client, tenant, "name,labels,cohort\nu1,us;eu,early\nu2,,\n")
    assert [r["status"] for r in changed["rows"]] == ["updated", "unchanged"]
    u1 = await device(client, tenant, "u1")
    assert (u1["product"], u1["cohort"], u1["labels"]) == ("press", "early", ["us", "eu"])
    cleared = await send(client, tenant, "name,product,cohort\nu1,,\n")
    assert cleared["rows"][0]["status"] == "updated"
    assert (await device(client, tenant, "u1"))["product"] is None

    json_upsert = await send(client, tenant, [{"name": "u2", "description": "two"}])
    assert json_upsert["updated"] == 1
    u2 = await device(client, tenant, "u2")
    assert (u2["description"], u2["product"]) == ("two", "pump")

    refused = await send(client, tenant, "name\nu1\nu3\n", mode="create")
    assert [r["status"] for r in refused["rows"]] == ["error", "created"]
    assert refused["rows"][0]["error"] == (
        "name: device 'u1' already exists (mode=create changes no device; use mode=upsert)"
    )

    # a gateway cannot become a field device (its name says what it is)
    kind = await send(client, tenant, [{"name": "u2", "kind": "field", "parent": "plant1"}])
    assert kind["rows"][0]["error"].startswith("name: a field device name is '{gateway}.")
    entries = await import_audit(app, tenant.org_id)
    assert [(e.resource_id, e.before is None) for e in entries] == [
        ("u1", True), ("u2", True), ("u1", False), ("u1", False), ("u2", False), ("u3", True),
    ]


async def test_dry_run_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    before = await device_count(app)
    report = await send(client, tenant, MIXED_CSV, dry_run=True)
    assert report["dry_run"] is True and (report["created"], report["failed"]) == (4, 6)
    assert await device_count(app) == before
    assert await import_audit(app, tenant.org_id) == []
    # and an update is only reported
    report = await send(client, tenant, [{"name": "plant1", "labels": ["x"]}], dry_run=True)
    assert report["updated"] == 1
    assert (await device(client, tenant, "plant1"))["labels"] == []


async def test_atomic_import_is_all_or_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, catalogue: None
) -> None:
    before = await device_count(app)
    body = assert_problem(
        await client.post(
            URL, content=MIXED_CSV, params={"atomic": "true"}, headers={**tenant.headers, **CSV}
        ),
        422, "6 of 10 rows failed, so nothing was imported",
    )
    assert body["type"] == "urn:fieldgate:problem:import-failed"
    assert body["report"]["failed"] == 6 and len(body["report"]["rows"]) == 10
    assert await device_count(app) == before
    assert await import_audit(app, tenant.org_id) == []

    report = await send(client, tenant, "name,product\na1,press\na2,pump\n", atomic=True)
    assert report["created"] == 2 and await device_count(app) == before + 2


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b"name,labels\ngw1,eu\ngw2,\xff\xfe\n", "line 3: not valid UTF-8"),
        (b'name,labels\ngw1,eu\ngw2,"eu"x\n', "line 3: malformed CSV"),
        (b"name,color\ngw1,red\n", "line 1: unknown column 'color'"),
        (b"labels,kind\neu,gateway\n", "line 1: the header has no 'name' column"),
        (b"name,labels,Labels\n", "line 1: column 'labels' appears twice"),
        (b"\n\n", "empty CSV"),
    ],
)
async def test_malformed_csv_is_422_naming_the_line(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, content: bytes, detail: str
) -> None:
    before = await device_count(app)
    response = await client.post(URL, content=content, headers={**tenant.headers, **CSV})
    body = assert_problem(response, 422, detail)
    assert body["errors"] == [{"field": "body", "message": body["detail"]}]
    assert await device_count(app) == before


async def test_malformed_json_unsupported_type_and_too_many_rows(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = {**tenant.headers, **JSON}
    assert_problem(await client.post(URL, content=b'[{"name": "a",}]', headers=headers), 422,
                   "malformed JSON", "line 1")
    assert_problem(await client.post(URL, content=b'{"name": "a"}', headers=headers), 422,
                   "expected a JSON array")
    assert_problem(
        await client.post(URL, content=b"name\ngw\n",
                          headers={**tenant.headers, "Content-Type": "text/plain"}),
        415, "text/csv or application/json",
    )
    rows = "name\n" + "".join(f"g{i}\n" for i in range(MAX_ROWS + 1))
    assert_problem(await client.post(URL, content=rows, headers={**tenant.headers, **CSV}),
                   413, f"at most {MAX_ROWS} rows per import; this one has {MAX_ROWS + 1}")
    assert_problem(
        await client.post(URL, content=b"name\ngw\n", params={"mode": "merge"},
                          headers={**tenant.headers, **CSV}),
        422, "query parameter 'mode'",
    )


async def test_import_needs_manage_devices(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    response = await client.post(
        URL, content=b"name\ngw\n",
        headers={"Authorization": f"Bearer {viewer.secret}", **CSV},
    )
    assert_problem(response, 403, "needs role 'admin'")


async def test_import_never_touches_another_org(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await client.post(
        "/api/v1/products", json={"name": "theirs"}, headers=other_tenant.headers
    )
    assert theirs.status_code == 201
    before = await device(client, other_tenant, "mill1")
    report = await send(client, tenant, [
        {"name": "mill1", "labels": ["hijack"]},                # their gateway: names are global
        {"name": "mill1.saw"},                                  # under their gateway
        {"name": "gw9", "product": "theirs"},                   # their product
    ])
    assert [r["error"] for r in report["rows"]] == [
        "name: a device named 'mill1' is already registered",
        "parent: no gateway named 'mill1'",
        "product: no product named 'theirs'",
    ]
    assert await device(client, other_tenant, "mill1") == before
    assert await device(client, other_tenant, "mill1.saw") is None
