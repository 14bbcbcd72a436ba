"""Device identity through the API, on SQLite and PostgreSQL: org CAs (generated and
registered), CSR signing, certificates, device tokens, device revocation, CRLs, the audit
log, tenant isolation, and ``StoreDeviceAuthority`` (what the broker asks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cloud_asserts import assert_problem
from cloud_testkit import Database, Tenant
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from cloud.auth import keystore, x509
from cloud.auth.apikeys import issue_key
from cloud.identity import StoreDeviceAuthority
from cloud.settings import CloudSettings
from cloud.store.models import (
    AuditEntry,
    CertificateAuthority,
    Device,
    DeviceCertificate,
    DeviceToken,
    Role,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(settings: CloudSettings, database: Database) -> CloudSettings:
    """PostgreSQL nodes need the secret key; SQLite ones use the key file next to the
    database (the default, exercised here)."""
    if database.schema is not None:
        return settings.model_copy(update={"secret_key": SecretStr("test-cluster-secret")})
    return settings


@pytest.fixture
def authority(app: FastAPI) -> StoreDeviceAuthority:
    return StoreDeviceAuthority(app.state.store)


# -- helpers -------------------------------------------------------------------------------------


def csr_pem(common_name: str = "whatever", key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    csr = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def der(pem: str) -> bytes:
    return cx509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def sign(
    ca_cert: cx509.Certificate,
    ca_key: x509.PrivateKey,
    common_name: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> bytes:
    """A client certificate (DER) signed outside the cloud."""
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(start or now - timedelta(minutes=1))
        .not_valid_after(end or now + timedelta(days=30))
        .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


class ExternalCa:
    """A customer's own CA: the test holds the key, the cloud only the certificate."""

    def __init__(self, name: str) -> None:
        pair = x509.generate_ca(name, organization="customer-pki")
        self.pem = pair.certificate_pem
        self.cert = x509.load_certificate(pair.certificate_pem)
        self.key = x509.load_private_key(pair.key_pem)

    def issue(self, common_name: str, **kw: Any) -> bytes:
        return sign(self.cert, self.key, common_name, **kw)


async def create_ca(client: httpx.AsyncClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/cas", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def issue_cert(
    client: httpx.AsyncClient, tenant: Tenant, device: str | None = None, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/devices/{device or tenant.gateway}/certificates",
        json={"csr": csr_pem(), **body}, headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def audit_log(app: FastAPI, org_id: int) -> list[AuditEntry]:
    async with app.state.store.sessions() as session:
        stmt = select(AuditEntry).where(AuditEntry.org_id == org_id).order_by(AuditEntry.id)
        return list((await session.execute(stmt)).scalars())


async def ca_key(app: FastAPI, ca_id: int) -> x509.PrivateKey:
    async with app.state.store.sessions() as session:
        row = await session.get(CertificateAuthority, ca_id)
        assert row is not None and row.encrypted_key is not None
        return keystore.decrypt_key(row.encrypted_key, app.state.ca_secret)


# -- certificate authorities and signing -------------------------------------------------------


async def test_generated_ca_signs_a_csr_for_the_device(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ca = await create_ca(client, tenant, name="main")
    assert ca["can_sign"] and not ca["disabled"] and not ca["jit_registration"]
    assert ca["subject"] == "CN=main,O=acme"
    ca_cert = x509.load_ca_certificate(ca["certificate"])
    assert ca["fingerprint"] == x509.fingerprint(ca_cert)
    async with app.state.store.sessions() as session:
        row = await session.get(CertificateAuthority, ca["id"])
        assert row is not None and row.encrypted_key is not None
        assert row.encrypted_key.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")

    issued = await issue_cert(client, tenant, csr=csr_pem("not-my-name"), days=30)
    cert = x509.load_certificate(issued["certificate"])
    assert x509.common_name(cert.subject) == "plant1" == issued["common_name"]
    assert x509.issued_by(cert, ca_cert)
    assert issued["ca_chain"] == ca["certificate"]
    assert issued["source"] == "issued" and issued["ca_id"] == ca["id"]
    assert issued["serial"] == x509.serial_hex(cert)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=30)

    listed = await client.get("/api/v1/devices/plant1/certificates", headers=tenant.headers)
    assert [c["id"] for c in listed.json()] == [issued["id"]]
    assert "certificate" not in listed.json()[0]
    one = await client.get(f"/api/v1/devices/plant1/certificates/{issued['id']}",
                           headers=tenant.headers)
    assert one.json()["fingerprint"] == issued["fingerprint"] and one.json()["revoked_at"] is None

    actions = [(e.action, e.actor_type) for e in await audit_log(app, tenant.org_id)]
    assert ("certificate_authority.create", "api_key") in actions
    assert ("device_certificate.create", "api_key") in actions
    for entry in await audit_log(app, tenant.org_id):
        assert "PRIVATE KEY" not in str(entry.after) and "BEGIN" not in str(entry.after)


async def test_revoked_certificate_is_in_the_crl(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ca = await create_ca(client, tenant, name="main")
    kept = await issue_cert(client, tenant)
    revoked = await issue_cert(client, tenant)
    url = f"/api/v1/devices/plant1/certificates/{revoked['id']}"
    first = await client.delete(url, headers=tenant.headers)
    assert first.status_code == 200 and first.json()["revoked_at"]
    again = await client.delete(url, headers=tenant.headers)  # idempotent
    assert again.json()["revoked_at"] == first.json()["revoked_at"]

    response = await client.get(f"/api/v1/cas/{ca['id']}/crl", headers=tenant.headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-pem-file"
    crl = cx509.load_pem_x509_crl(response.content)
    ca_cert = x509.load_certificate(ca["certificate"])
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert [entry.serial_number for entry in crl] == [int(revoked["serial"], 16)]
    assert crl.get_revoked_certificate_by_serial_number(int(kept["serial"], 16)) is None
    revocations = [e for e in await audit_log(app, tenant.org_id)
                   if e.action == "device_certificate.revoke"]
    assert len(revocations) == 1 and revocations[0].resource_id == str(revoked["id"])


async def test_registered_ca_verifies_but_cannot_sign_and_is_unique_across_orgs(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    external = ExternalCa("factory")
    registered = await create_ca(client, tenant, name="factory", certificate=external.pem)
    assert not registered["can_sign"]
    assert registered["fingerprint"] == x509.fingerprint(external.cert)

    response = await client.post(
        "/api/v1/devices/plant1/certificates",
        json={"csr": csr_pem(), "ca": registered["id"]}, headers=tenant.headers,
    )
    assert_problem(response, 409, "registered without its private key")
    response = await client.get(f"/api/v1/cas/{registered['id']}/crl", headers=tenant.headers)
    assert_problem(response, 409, "without its private key")
    response = await client.post(
        "/api/v1/devices/plant1/certificates", json={"csr": csr_pem()}, headers=tenant.headers
    )
    assert_problem(response, 409, "no enabled, unexpired certificate authority that can sign")

    for who in (other_tenant, tenant):
        response = await client.post(
            "/api/v1/cas", json={"name": "copy", "certificate": external.pem}, headers=who.headers
        )
        body = assert_problem(response, 409, "this CA certificate is already registered")
        assert "acme" not in response.text and "globex" not in body["detail"]
    async with app.state.store.sessions() as session:
        rows = (await session.execute(select(CertificateAuthority))).scalars().all()
        assert [(r.org_id, r.name) for r in rows] == [(tenant.org_id, "factory")]


async def test_without_a_secret_key_cas_are_registered_but_not_generated(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    app.state.ca_secret = None  # what a PostgreSQL node without FIELDGATE_CLOUD_SECRET_KEY has
    response = await client.post("/api/v1/cas", json={"name": "main"}, headers=tenant.headers)
    assert_problem(response, 409, "set FIELDGATE_CLOUD_SECRET_KEY")
    await create_ca(client, tenant, name="factory", certificate=ExternalCa("f").pem)


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"certificate": "garbage"}, "certificate", "not an X.509 certificate"),
        ({"certificate": "CERT"}, "certificate", "not a CA certificate"),
        ({"certificate": "KEY"}, "certificate", "contains a private key"),
        ({"certificate": "x" * (16 * 1024 + 1)}, "certificate", "at most 16384"),
        ({"days": 10, "certificate": "CA"}, "body", "'days' applies to a generated CA"),
        ({"unknown": 1}, "unknown", "Extra inputs are not permitted"),
    ],
)
async def test_unusable_ca_requests_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], field: str, detail: str
) -> None:
    external = ExternalCa("ext")
    leaf = der_to_pem(external.issue("leaf"))
    key_pem = x509.key_to_pem(external.key)
    replace = {"CA": external.pem, "CERT": leaf, "KEY": external.pem + key_pem}
    payload = {"name": "bad", **{k: replace.get(v, v) if isinstance(v, str) else v
                                  for k, v in body.items()}}
    response = await client.post("/api/v1/cas", json=payload, headers=tenant.headers)
    problem = assert_problem(response, 422, detail)
    assert any(e["field"].endswith(field) for e in problem["errors"]), problem


def der_to_pem(data: bytes) -> str:
    return x509.to_pem(x509.load_certificate(data))


@pytest.mark.parametrize(
    ("csr", "detail"),
    [("nope", "not a PEM certificate signing request"), ("", "at least 1 character")],
)
async def test_malformed_csr_is_422_naming_the_field(
    client: httpx.AsyncClient, tenant: Tenant, csr: str, detail: str
) -> None:
    await create_ca(client, tenant, name="main")
    response = await client.post(
        "/api/v1/devices/plant1/certificates", json={"csr": csr}, headers=tenant.headers
    )
    problem = assert_problem(response, 422, detail)
    assert problem["errors"][0]["field"] == "csr"


async def test_ca_names_patch_and_disable(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    ca = await create_ca(client, tenant, name="main")
    response = await client.post("/api/v1/cas", json={"name": "main"}, headers=tenant.headers)
    assert_problem(response, 409, "named 'main' already exists")
    await create_ca(client, other_tenant, name="main")  # names are per org

    url = f"/api/v1/cas/{ca['id']}"
    patched = await client.patch(url, json={"name": "primary", "jit_registration": True},
                                 headers=tenant.headers)
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "primary" and patched.json()["jit_registration"]

    disabled = await client.delete(url, headers=tenant.headers)
    assert disabled.status_code == 200 and disabled.json()["disabled"]
    assert disabled.json()["disabled_at"]
    response = await client.post(
        "/api/v1/devices/plant1/certificates", json={"csr": csr_pem(), "ca": ca["id"]},
        headers=tenant.headers,
    )
    assert_problem(response, 409, "'primary' is disabled")
    response = await client.post(
        "/api/v1/devices/plant1/certificates", json={"csr": csr_pem()}, headers=tenant.headers
    )
    assert_problem(response, 409, "no enabled")

    enabled = await client.patch(url, json={"disabled": False}, headers=tenant.headers)
    assert not enabled.json()["disabled"]
    await issue_cert(client, tenant)
    listed = await client.get("/api/v1/cas", headers=tenant.headers)
    assert [c["name"] for c in listed.json()] == ["primary"]
    actions = [e.action for e in await audit_log(app, tenant.org_id)]
    assert actions.count("certificate_authority.update") == 2
    assert actions.count("certificate_authority.disable") == 1


async def test_viewers_read_identity_but_change_nothing(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    ca = await create_ca(client, tenant, name="main")
    async with app.state.store.sessions.begin() as session:
        viewer = await issue_key(session, tenant.org_id, name="v", role=Role.VIEWER)
    headers = {"Authorization": f"Bearer {viewer.secret}"}
    for path in ("/api/v1/cas", f"/api/v1/cas/{ca['id']}", f"/api/v1/cas/{ca['id']}/crl",
                 "/api/v1/devices/plant1/certificates", "/api/v1/devices/plant1/tokens"):
        assert (await client.get(path, headers=headers)).status_code == 200, path
    for method, path, body in (
        ("POST", "/api/v1/cas", {"name": "x"}),
        ("DELETE", f"/api/v1/cas/{ca['id']}", None),
        ("POST", "/api/v1/devices/plant1/tokens", {"name": "t"}),
        ("POST", "/api/v1/devices/plant1/revoke", None),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert_problem(response, 403, "needs role 'admin'")


# -- tokens and device revocation ------------------------------------------------------------------


async def test_tokens_are_shown_once_and_revocable(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    url = "/api/v1/devices/plant1/tokens"
    created = await client.post(url, json={"name": "http"}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    assert token.startswith("fgd_") and created.json()["prefix"] == token[:12]
    listed = await client.get(url, headers=tenant.headers)
    mine = [t for t in listed.json() if t["id"] == created.json()["id"]]
    assert [t["name"] for t in mine] == ["http"] and "token" not in mine[0]
    assert token not in listed.text and "token_hash" not in listed.text

    device = {"Authorization": f"Bearer {token}"}
    enrolled = await client.post("/device/v1/certificate", json={"csr": csr_pem()},
                                 headers=device)
    assert_problem(enrolled, 409, "no enabled")  # authenticated; the org has no CA yet

    revoked = await client.delete(f"{url}/{created.json()['id']}", headers=tenant.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    response = await client.post("/device/v1/certificate", json={"csr": csr_pem()},
                                 headers=device)
    assert_problem(response, 401, "the device token was revoked")

    response = await client.post(url, json={"name": "late", "expires_at": "2001-01-01T00:00:00Z"},
                                 headers=tenant.headers)
    assert_problem(response, 422, "expires_at must be in the future")
    actions = [e.action for e in await audit_log(app, tenant.org_id)]
    assert actions.count("device_token.create") == 1 and actions.count("device_token.revoke") == 1
    for entry in await audit_log(app, tenant.org_id):
        assert token not in str(entry.after)


async def test_revoking_a_device_revokes_everything_it_holds(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, authority: StoreDeviceAuthority
) -> None:
    await create_ca(client, tenant, name="main")
    issued = await issue_cert(client, tenant)
    token = (await client.post("/api/v1/devices/plant1/tokens", json={"name": "t"},
                               headers=tenant.headers)).json()["token"]
    device = {"Authorization": f"Bearer {token}"}
    assert await authority.by_certificate(der(issued["certificate"])) is not None

    live = [t for t in (await client.get("/api/v1/devices/plant1/tokens",
                                         headers=tenant.headers)).json() if not t["revoked_at"]]
    revoked = await client.post("/api/v1/devices/plant1/revoke", headers=tenant.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["certificates_revoked"] == 1
    assert revoked.json()["tokens_revoked"] == len(live) >= 1
    assert revoked.json()["revoked_at"]
    assert await authority.by_certificate(der(issued["certificate"])) is None
    assert await authority.by_token("plant1", token) is None
    response = await client.post("/device/v1/telemetry", content=b"{}", headers=device)
    assert_problem(response, 401, "revoked")
    response = await client.post("/api/v1/devices/plant1/tokens", json={"name": "t2"},
                                 headers=tenant.headers)
    assert_problem(response, 409, "is revoked; restore it")

    restored = await client.post("/api/v1/devices/plant1/restore", headers=tenant.headers)
    assert restored.status_code == 200 and restored.json()["revoked_at"] is None
    # what was revoked stays revoked; new credentials work
    assert await authority.by_certificate(der(issued["certificate"])) is None
    assert await authority.by_token("plant1", token) is None
    fresh = await issue_cert(client, tenant)
    identity = await authority.by_certificate(der(fresh["certificate"]))
    assert identity is not None and identity.name == "plant1"
    actions = [e.action for e in await audit_log(app, tenant.org_id)]
    assert actions.count("device.revoke") == 1 and actions.count("device.restore") == 1


# -- the broker's view: StoreDeviceAuthority -------------------------------------------------------


async def test_by_certificate_accepts_issued_certificates_and_refuses_the_rest(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, authority: StoreDeviceAuthority
) -> None:
    ca = await create_ca(client, tenant, name="main")
    issued = await issue_cert(client, tenant)
    identity = await authority.by_certificate(der(issued["certificate"]))
    assert identity is not None
    assert (identity.org_id, identity.name) == (tenant.org_id, "plant1")
    async with app.state.store.sessions() as session:
        device = (await session.execute(select(Device).where(Device.name == "plant1"))).scalar_one()
    assert identity.device_id == device.id

    stranger = ExternalCa("main")  # same subject as nothing registered; unknown issuer
    assert await authority.by_certificate(stranger.issue("plant1")) is None

    key = await ca_key(app, ca["id"])
    ca_cert = x509.load_certificate(ca["certificate"])
    past = datetime.now(UTC) - timedelta(days=30)
    expired = sign(ca_cert, key, "plant1", start=past, end=past + timedelta(days=1))
    assert await authority.by_certificate(expired) is None
    assert await authority.by_certificate(sign(ca_cert, key, "no such/name")) is None
    assert await authority.by_certificate(b"not a certificate") is None

    await client.delete(f"/api/v1/devices/plant1/certificates/{issued['id']}",
                        headers=tenant.headers)
    assert await authority.by_certificate(der(issued["certificate"])) is None

    other = await issue_cert(client, tenant)
    await client.delete(f"/api/v1/cas/{ca['id']}", headers=tenant.headers)
    assert await authority.by_certificate(der(other["certificate"])) is None
    assert ca["certificate"] not in await authority.trusted_cas()


async def test_certificate_of_a_known_device_from_a_registered_ca_is_learnt(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, authority: StoreDeviceAuthority
) -> None:
    external = ExternalCa("factory")
    await create_ca(client, tenant, name="factory", certificate=external.pem)
    presented = external.issue("plant1")
    identity = await authority.by_certificate(presented)
    assert identity is not None and identity.name == "plant1"
    assert await authority.by_certificate(presented) is not None  # reconnect: same row

    listed = (await client.get("/api/v1/devices/plant1/certificates",
                               headers=tenant.headers)).json()
    assert [(c["source"], c["fingerprint"]) for c in listed] == [
        ("jit", x509.fingerprint(x509.load_certificate(presented)))
    ]
    await client.delete(f"/api/v1/devices/plant1/certificates/{listed[0]['id']}",
                        headers=tenant.headers)
    assert await authority.by_certificate(presented) is None
    assert external.pem.strip() in [pem.strip() for pem in await authority.trusted_cas()]


async def test_just_in_time_registration(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    authority: StoreDeviceAuthority,
) -> None:
    jit = ExternalCa("jit")
    ca = await create_ca(client, tenant, name="jit", certificate=jit.pem, jit_registration=True)

    identity = await authority.by_certificate(jit.issue("newgw"))
    assert identity is not None and (identity.org_id, identity.name) == (tenant.org_id, "newgw")
    device = await client.get("/api/v1/devices/newgw", headers=tenant.headers)
    assert device.status_code == 200 and device.json()["kind"] == "gateway"
    certs = (await client.get("/api/v1/devices/newgw/certificates", headers=tenant.headers)).json()
    assert [c["source"] for c in certs] == ["jit"]
    entries = [e for e in await audit_log(app, tenant.org_id) if e.actor_type == "system"]
    assert [(e.action, e.resource_id, e.actor_name) for e in entries] == [
        ("device.create", "newgw", "jit-registration"),
        ("device_certificate.create", str(certs[0]["id"]), "jit-registration"),
    ]

    # a gateway name taken in another org is never registered here
    assert await authority.by_certificate(jit.issue(other_tenant.gateway)) is None
    async with app.state.store.sessions() as session:
        owners = (await session.execute(
            select(Device.org_id).where(Device.name == other_tenant.gateway)
        )).scalars().all()
    assert owners == [other_tenant.org_id]

    # JIT off: unknown devices are refused and nothing is created
    await client.patch(f"/api/v1/cas/{ca['id']}", json={"jit_registration": False},
                       headers=tenant.headers)
    assert await authority.by_certificate(jit.issue("ghost")) is None
    ghost = await client.get("/api/v1/devices/ghost", headers=tenant.headers)
    assert ghost.status_code == 404
    # ... while registered devices still connect
    assert await authority.by_certificate(jit.issue("newgw")) is not None


async def test_by_token(
    client: httpx.AsyncClient, tenant: Tenant, authority: StoreDeviceAuthority
) -> None:
    created = await client.post("/api/v1/devices/plant1/tokens", json={"name": "mqtt"},
                                headers=tenant.headers)
    token = created.json()["token"]
    identity = await authority.by_token("plant1", token)
    assert identity is not None and identity.org_id == tenant.org_id
    assert await authority.by_token("mill1", token) is None
    assert await authority.by_token("plant1", token[:-2] + "xx") is None
    assert await authority.by_token("plant1", "password") is None


# -- tenancy ---------------------------------------------------------------------------------------


async def _org_rows(app: FastAPI, org_id: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    async with app.state.store.sessions() as session:
        for model in (CertificateAuthority, DeviceCertificate, DeviceToken, Device, AuditEntry):
            stmt = select(model.__table__).where(model.org_id == org_id).order_by(model.id)
            rows.extend(tuple(row) for row in (await session.execute(stmt)).all())
    return rows


async def test_another_orgs_identity_objects_are_404_and_unchanged(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create_ca(client, tenant, name="mine")
    theirs = await create_ca(client, other_tenant, name="theirs")
    cert = await issue_cert(client, other_tenant)
    token = (await client.post("/api/v1/devices/mill1/tokens", json={"name": "t"},
                               headers=other_tenant.headers)).json()
    before = await _org_rows(app, other_tenant.org_id)

    ca_url, dev = f"/api/v1/cas/{theirs['id']}", "/api/v1/devices/mill1"
    attempts: list[tuple[str, str, Any]] = [
        ("GET", ca_url, None),
        ("PATCH", ca_url, {"jit_registration": True}),
        ("DELETE", ca_url, None),
        ("GET", f"{ca_url}/crl", None),
        ("GET", f"{dev}/certificates", None),
        ("POST", f"{dev}/certificates", {"csr": csr_pem()}),
        ("GET", f"{dev}/certificates/{cert['id']}", None),
        ("DELETE", f"{dev}/certificates/{cert['id']}", None),
        ("GET", f"{dev}/tokens", None),
        ("POST", f"{dev}/tokens", {"name": "x"}),
        ("DELETE", f"{dev}/tokens/{token['id']}", None),
        ("POST", f"{dev}/revoke", None),
        ("POST", f"{dev}/restore", None),
        # their ids under my own device
        ("GET", f"/api/v1/devices/plant1/certificates/{cert['id']}", None),
        ("DELETE", f"/api/v1/devices/plant1/certificates/{cert['id']}", None),
        ("DELETE", f"/api/v1/devices/plant1/tokens/{token['id']}", None),
        ("POST", "/api/v1/devices/plant1/certificates", {"csr": csr_pem(), "ca": theirs["id"]}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=tenant.headers)
        assert_problem(response, 404, "not found")
        assert "globex" not in response.text and "theirs" not in response.text
    listed = await client.get("/api/v1/cas", headers=tenant.headers)
    assert [c["name"] for c in listed.json()] == ["mine"]
    assert await _org_rows(app, other_tenant.org_id) == before
