"""The device API (``/device/v1``) on SQLite and PostgreSQL: device-token authentication,
enrolment (a certificate for the caller's own key) and HTTP telemetry."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from cloud_asserts import assert_problem
from cloud_testkit import T0, Database, Tenant, batch_bytes
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from cloud.auth import x509
from cloud.settings import CloudSettings
from cloud.store.models import AuditEntry

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: CloudSettings, database: Database) -> CloudSettings:
    if database.schema is not None:
        return settings.model_copy(update={"secret_key": SecretStr("test-cluster-secret")})
    return settings


async def device_token(client: httpx.AsyncClient, tenant: Tenant, device: str = "") -> str:
    response = await client.post(
        f"/api/v1/devices/{device or tenant.gateway}/tokens", json={"name": "http"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csr_for(key: ec.EllipticCurvePrivateKey, common_name: str = "ignored") -> str:
    csr = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing credentials"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "must be 'Bearer <device token"),
        ({"Authorization": "Bearer fgk_" + "x" * 43}, "malformed device token"),
        ({"Authorization": "Bearer fgd_" + "x" * 43}, "invalid device token"),
    ],
)
async def test_device_api_needs_a_device_token(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str], detail: str
) -> None:
    for path in ("/device/v1/telemetry", "/device/v1/certificate"):
        response = await client.post(path, json={"csr": "x"}, headers=headers)
        assert_problem(response, 401, detail)
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_api_keys_are_not_device_credentials(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post("/device/v1/telemetry", content=b"{}", headers=tenant.headers)
    assert_problem(response, 401, "malformed device token")


async def test_enrol_signs_the_callers_own_key(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ca = await client.post("/api/v1/cas", json={"name": "main"}, headers=tenant.headers)
    token = await device_token(client, tenant)
    key = ec.generate_private_key(ec.SECP256R1())
    response = await client.post(
        "/device/v1/certificate", json={"csr": csr_for(key, "someone-else")}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    cert = x509.load_certificate(body["certificate"])
    assert x509.common_name(cert.subject) == tenant.gateway
    assert cert.public_key() == key.public_key()
    assert body["ca_chain"] == ca.json()["certificate"]
    assert x509.issued_by(cert, x509.load_certificate(body["ca_chain"]))
    assert body["broker_ca"] == getattr(app.state, "broker_ca_pem", None)
    assert body["serial"] == x509.serial_hex(cert)

    listed = await client.get(f"/api/v1/devices/{tenant.gateway}/certificates",
                              headers=tenant.headers)
    assert [c["fingerprint"] for c in listed.json()] == [body["fingerprint"]]
    async with app.state.store.sessions() as session:
        entry = (await session.execute(
            select(AuditEntry).where(AuditEntry.action == "device_certificate.create")
        )).scalar_one()
    assert (entry.actor_type, entry.actor_name, entry.org_id) == (
        "device", tenant.gateway, tenant.org_id
    )

    bad = await client.post("/device/v1/certificate", json={"csr": "junk"}, headers=bearer(token))
    problem = assert_problem(bad, 422, "csr: not a PEM certificate signing request")
    assert problem["errors"][0]["field"] == "csr"


async def test_telemetry_over_http_is_stored_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = await device_token(client, tenant)
    body = batch_bytes(1, [("pump1", "flow", T0, 12.5), ("pump1", "state", T0 + 1, "run")])
    response = await client.post(
        "/device/v1/telemetry", content=body,
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["gateway"] == tenant.gateway and response.json()["points"] == 2

    latest = await client.get(f"/api/v1/devices/{tenant.gateway}.pump1/latest",
                              headers=tenant.headers)
    assert latest.status_code == 200, latest.text
    values = {item["tag"]: item["value"] for item in latest.json()["values"]}
    assert values == {"flow": 12.5, "state": "run"}

    again = await client.post("/device/v1/telemetry", content=body, headers=bearer(token))
    assert again.status_code == 200
    assert again.json()["stored"] in (0, None)  # re-delivery stores nothing twice
    page = await client.get(f"/api/v1/devices/{tenant.gateway}.pump1/telemetry",
                            headers=tenant.headers)
    assert len(page.json()["items"]) == 2

    # the field device that appeared holds no credentials of its own: its gateway talks
    for path, body in (("tokens", {"name": "t"}), ("certificates", {"csr": "x"})):
        response = await client.post(f"/api/v1/devices/{tenant.gateway}.pump1/{path}",
                                     json=body, headers=tenant.headers)
        assert_problem(response, 409, "is a field device behind gateway 'plant1'")


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"not json", "Invalid JSON"),
        (orjson.dumps({"v": 1, "first": 0, "series": [], "s": [], "t": [], "val": []}),
         "at least one reading"),
        (orjson.dumps({"v": 1, "first": 0, "series": [["d", "t"]], "s": [0], "t": [T0]}),
         "body field 'val': Field required"),
        (batch_bytes(0, [("bad device", "t", T0, 1)]), "does not match"),
    ],
)
async def test_malformed_telemetry_is_422_naming_the_problem(
    client: httpx.AsyncClient, tenant: Tenant, payload: bytes, detail: str
) -> None:
    token = await device_token(client, tenant)
    response = await client.post("/device/v1/telemetry", content=payload, headers=bearer(token))
    assert_problem(response, 422, detail)


async def test_a_revoked_device_is_refused_at_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = await device_token(client, tenant)
    body = batch_bytes(1, [("pump1", "flow", T0, 1)])
    ok = await client.post("/device/v1/telemetry", content=body, headers=bearer(token))
    assert ok.status_code == 200
    await client.post(f"/api/v1/devices/{tenant.gateway}/revoke", headers=tenant.headers)
    refused = await client.post("/device/v1/telemetry", content=body, headers=bearer(token))
    assert_problem(refused, 401, "revoked")
