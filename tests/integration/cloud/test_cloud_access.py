"""Users, console sign-in, API key expiry and rate limits, the org, the audit log and the
request size limit — through the HTTP API on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cloud_asserts import assert_problem
from cloud_testkit import Tenant
from fastapi import FastAPI
from sqlalchemy import select

from cloud.store.models import ApiKey, AuditEntry, User

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


async def add_user(
    client: httpx.AsyncClient, tenant: Tenant, email: str, role: str = "viewer"
) -> dict[str, object]:
    response = await client.post(
        "/api/v1/users",
        json={"email": email, "name": email.split("@")[0], "password": PASSWORD, "role": role},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_users_sign_in_with_a_hashed_password_and_act_with_their_role(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    user = await add_user(client, tenant, "Ops@Example.com", "operator")
    assert user["email"] == "ops@example.com" and "password" not in user

    async with app.state.store.sessions() as session:
        row = (await session.execute(select(User).where(User.id == user["id"]))).scalar_one()
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash

    token = await sign_in(client, "OPS@example.com")
    assert token.startswith("fgs_")
    me = await client.get("/api/v1/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["role"] == "operator" and me.json()["actor_type"] == "user"
    assert me.json()["org"]["name"] == tenant.org
    # an operator reads but does not manage devices
    assert (await client.get("/api/v1/devices", headers=bearer(token))).status_code == 200
    denied = await client.post("/api/v1/devices", json={"name": "gw2"}, headers=bearer(token))
    assert_problem(denied, 403, "needs role 'admin'")

    assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
    assert_problem(await client.get("/api/v1/auth/me", headers=bearer(token)), 401, "signed out")


@pytest.mark.parametrize(
    ("email", "password"),
    [("ops@example.com", "wrong password!"), ("nobody@example.com", PASSWORD)],
)
async def test_a_failed_sign_in_does_not_say_which_part_was_wrong(
    client: httpx.AsyncClient, tenant: Tenant, email: str, password: str
) -> None:
    await add_user(client, tenant, "ops@example.com")
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}
    )
    assert_problem(response, 401, "wrong e-mail or password")


async def test_disabled_user_is_refused_at_once(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    user = await add_user(client, tenant, "temp@example.com")
    token = await sign_in(client, "temp@example.com")
    changed = await client.patch(
        f"/api/v1/users/{user['id']}", json={"disabled": True}, headers=tenant.headers
    )
    assert changed.status_code == 200 and changed.json()["disabled_at"]
    assert_problem(await client.get("/api/v1/org", headers=bearer(token)), 401, "disabled")
    response = await client.post(
        "/api/v1/auth/login", json={"email": "temp@example.com", "password": PASSWORD}
    )
    assert_problem(response, 401, "wrong e-mail or password")


async def test_nobody_grants_a_role_above_their_own_and_an_org_keeps_an_owner(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await add_user(client, tenant, "admin@example.com", "admin")
    admin = bearer(await sign_in(client, "admin@example.com"))
    response = await client.post(
        "/api/v1/users",
        json={"email": "boss@example.com", "password": PASSWORD, "role": "owner"},
        headers=admin,
    )
    assert_problem(response, 403, "needs role 'owner'")
    key = await client.post("/api/v1/api-keys", json={"name": "k", "role": "owner"}, headers=admin)
    assert_problem(key, 403, "needs role 'owner'")

    owner = await add_user(client, tenant, "owner@example.com", "owner")
    demote = await client.patch(
        f"/api/v1/users/{owner['id']}", json={"role": "viewer"}, headers=admin
    )
    assert_problem(demote, 403, "needs role 'owner'")
    # the only owner user cannot be demoted, disabled or deleted, even by an owner
    for attempt in (
        client.patch(f"/api/v1/users/{owner['id']}", json={"role": "admin"},
                     headers=tenant.headers),
        client.patch(f"/api/v1/users/{owner['id']}", json={"disabled": True},
                     headers=tenant.headers),
        client.delete(f"/api/v1/users/{owner['id']}", headers=tenant.headers),
    ):
        assert_problem(await attempt, 409, "at least one active owner")
    still = await client.get(f"/api/v1/users/{owner['id']}", headers=tenant.headers)
    assert still.json()["role"] == "owner" and still.json()["disabled_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "role": "root"}, "role"),
        ({"email": "a@example.com", "password": PASSWORD, "admin": True}, "admin"),
    ],
)
async def test_bad_user_bodies_name_the_field(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/users", json=body, headers=tenant.headers)
    problem = assert_problem(response, 422)
    assert any(error["field"] == field for error in problem["errors"]), problem


async def test_duplicate_email_is_409_across_orgs(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await add_user(client, tenant, "same@example.com")
    response = await client.post(
        "/api/v1/users", json={"email": "same@example.com", "password": PASSWORD},
        headers=other_tenant.headers,
    )
    assert_problem(response, 409, "already exists")


async def test_own_password_change_needs_the_current_one(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await add_user(client, tenant, "me@example.com")
    me = bearer(await sign_in(client, "me@example.com"))
    wrong = await client.post(
        "/api/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "a new long secret"},
        headers=me,
    )
    assert_problem(wrong, 422, "current password is wrong")
    ok = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a new long secret"},
        headers=me,
    )
    assert ok.status_code == 204
    await sign_in(client, "me@example.com", "a new long secret")
    keys_have_no_password = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a new long secret"},
        headers=tenant.headers,
    )
    assert_problem(keys_have_no_password, 409, "API keys do not")


async def test_expired_key_is_401_and_expiry_must_be_future(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    refused = await client.post(
        "/api/v1/api-keys", json={"name": "old", "expires_at": past}, headers=tenant.headers
    )
    assert_problem(refused, 422, "future")

    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await client.post(
        "/api/v1/api-keys", json={"name": "temp", "expires_at": soon}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["expires_at"] and created.json()["created_by"].startswith("api key")
    key = bearer(created.json()["key"])
    assert (await client.get("/api/v1/org", headers=key)).status_code == 200
    listed = await client.get(f"/api/v1/api-keys/{created.json()['id']}", headers=tenant.headers)
    assert listed.json()["last_used_at"] is not None

    async with app.state.store.sessions.begin() as session:
        row = await session.get(ApiKey, created.json()["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert_problem(await client.get("/api/v1/org", headers=key), 401, "expired")


async def test_rate_limit_per_key_answers_429_with_retry_after(
    client: httpx.AsyncClient, tenant: Tenant, app: FastAPI
) -> None:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "slow", "rate_limit": 0.5}, headers=tenant.headers
    )
    slow = bearer(created.json()["key"])
    burst = app.state.rate_limiter.burst
    statuses = [
        (await client.get("/api/v1/org", headers=slow)).status_code for _ in range(burst + 1)
    ]
    assert statuses[:burst] == [200] * burst
    limited = await client.get("/api/v1/org", headers=slow)
    assert_problem(limited, 429, "0.5 requests/s")
    assert int(limited.headers["retry-after"]) >= 1
    # another key of the same org has its own bucket
    assert (await client.get("/api/v1/org", headers=tenant.headers)).status_code == 200


async def test_org_rename_is_owner_only_and_audited(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await add_user(client, tenant, "adm@example.com", "admin")
    admin = bearer(await sign_in(client, "adm@example.com"))
    assert_problem(
        await client.patch("/api/v1/org", json={"name": "x"}, headers=admin), 403, "owner"
    )
    taken = await client.patch(
        "/api/v1/org", json={"name": other_tenant.org}, headers=tenant.headers
    )
    assert_problem(taken, 409, "taken")
    renamed = await client.patch("/api/v1/org", json={"name": "acme-2"}, headers=tenant.headers)
    assert renamed.status_code == 200 and renamed.json()["name"] == "acme-2"

    page = await client.get("/api/v1/audit?action=org.update", headers=tenant.headers)
    (entry,) = page.json()["items"]
    assert entry["before"]["name"] == tenant.org and entry["after"]["name"] == "acme-2"
    assert entry["actor_type"] == "api_key" and entry["resource_id"] == str(tenant.org_id)


async def test_audit_log_records_every_access_change_and_pages_newest_first(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    user = await add_user(client, tenant, "a@example.com", "viewer")
    await client.patch(f"/api/v1/users/{user['id']}", json={"role": "operator"},
                       headers=tenant.headers)
    key = (await client.post("/api/v1/api-keys", json={"name": "k"}, headers=tenant.headers)
           ).json()
    await client.delete(f"/api/v1/api-keys/{key['id']}", headers=tenant.headers)
    await client.delete(f"/api/v1/users/{user['id']}", headers=tenant.headers)
    await add_user(client, other_tenant, "b@example.com")

    first = await client.get("/api/v1/audit?limit=3", headers=tenant.headers)
    assert first.status_code == 200
    second = await client.get(
        f"/api/v1/audit?limit=3&cursor={first.json()['next']}", headers=tenant.headers
    )
    actions = [e["action"] for e in first.json()["items"] + second.json()["items"]]
    assert actions == [
        "user.delete", "api_key.revoke", "api_key.create", "user.update", "user.create",
    ]
    assert second.json()["next"] is None
    entries = first.json()["items"] + second.json()["items"]
    update = entries[3]
    assert update["before"]["role"] == "viewer" and update["after"]["role"] == "operator"
    assert all(e["actor_name"].startswith("api key") for e in entries)
    assert not any("hash" in str(e) or PASSWORD in str(e) for e in entries)

    # filters; and the other org's entry is not visible
    by_resource = await client.get(
        f"/api/v1/audit?resource_type=user&resource_id={user['id']}", headers=tenant.headers
    )
    assert [e["action"] for e in by_resource.json()["items"]] == [
        "user.delete", "user.update", "user.create",
    ]
    async with app.state.store.sessions() as session:
        orgs = set((await session.execute(select(AuditEntry.org_id))).scalars())
    assert orgs == {tenant.org_id, other_tenant.org_id}
    other = await client.get("/api/v1/audit", headers=other_tenant.headers)
    assert [e["action"] for e in other.json()["items"]] == ["user.create"]


async def test_oversized_bodies_are_413_before_parsing(
    client: httpx.AsyncClient, tenant: Tenant, app: FastAPI
) -> None:
    limit = app.state.settings.max_body_bytes
    body = b'{"name": "' + b"x" * limit + b'"}'
    response = await client.post(
        "/api/v1/api-keys", content=body, headers={**tenant.headers,
                                                   "content-type": "application/json"}
    )
    assert_problem(response, 413, f"limit of {limit} bytes")

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = await client.post(
        "/api/v1/api-keys", content=chunks(),
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert_problem(streamed, 413)
