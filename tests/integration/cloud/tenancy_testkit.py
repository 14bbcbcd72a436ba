"""An org filled with one object of every kind, and a valid request for every API route,
for the tests that walk the whole API (tenant isolation, roles). Imported by module name.

``populate`` creates the objects through the API and returns the values of every path
parameter the API knows. ``request_for`` builds a valid request for a route from a
population: a route whose path parameter or body is unknown here fails the walking tests
with a message saying what to add, so a new route cannot go untested.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cloud_testkit import Tenant
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from sqlalchemy import Table, select

from cloud.store.db import Store
from cloud.store.models import Base

PASSWORD = "correct horse battery"


@dataclass
class Population:
    tenant: Tenant
    prefix: str
    """Every name this org's objects carry starts with it (to spot leaks in responses)."""
    params: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return self.tenant.headers


def csr_pem(common_name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def _post(client: httpx.AsyncClient, url: str, pop: Population, body: Any) -> Any:
    response = await client.post(url, json=body, headers=pop.headers)
    assert response.status_code in (200, 201), f"POST {url}: {response.text}"
    return response.json()


async def populate(client: httpx.AsyncClient, tenant: Tenant, prefix: str) -> Population:
    """One object of each kind in ``tenant``'s org, named with ``prefix``."""
    pop = Population(tenant=tenant, prefix=prefix)
    p = pop.params
    p["device"] = tenant.gateway
    p["product"] = (await _post(client, "/api/v1/products", pop, {"name": f"{prefix}-prod"}))[
        "name"
    ]
    p["cohort"] = (
        await _post(
            client, "/api/v1/cohorts", pop, {"name": f"{prefix}-cohort", "product": p["product"]}
        )
    )["name"]
    p["user_id"] = str(
        (
            await _post(
                client, "/api/v1/users", pop,
                {"email": f"{prefix}-user@example.com", "password": PASSWORD, "role": "viewer"},
            )
        )["id"]
    )
    p["key_id"] = str(
        (await _post(client, "/api/v1/api-keys", pop, {"name": f"{prefix}-key"}))["id"]
    )
    p["ca_id"] = str((await _post(client, "/api/v1/cas", pop, {"name": f"{prefix}-ca"}))["id"])
    p["cert_id"] = str(
        (
            await _post(
                client, f"/api/v1/devices/{tenant.gateway}/certificates", pop,
                {"csr": csr_pem(tenant.gateway)},
            )
        )["id"]
    )
    p["token_id"] = str(
        (
            await _post(
                client, f"/api/v1/devices/{tenant.gateway}/tokens", pop, {"name": f"{prefix}-tok"}
            )
        )["id"]
    )
    return pop


Body = Callable[[Population], Any]

BODIES: dict[tuple[str, str], Body] = {
    ("PATCH", "/api/v1/org"): lambda pop: {"name": f"{pop.prefix}-org-renamed"},
    ("POST", "/api/v1/auth/login"): lambda pop: {"email": "x@example.com", "password": "x"},
    ("POST", "/api/v1/auth/password"): lambda pop: {
        "current_password": PASSWORD, "new_password": PASSWORD + "!",
    },
    ("POST", "/api/v1/users"): lambda pop: {
        "email": f"{pop.prefix}-new@example.com", "password": PASSWORD,
    },
    ("PATCH", "/api/v1/users/{user_id}"): lambda pop: {"name": "renamed"},
    ("POST", "/api/v1/api-keys"): lambda pop: {"name": f"{pop.prefix}-new-key"},
    ("POST", "/api/v1/devices"): lambda pop: {
        "name": f"{pop.prefix}-gw2", "product": pop.params["product"],
        "cohort": pop.params["cohort"],
    },
    ("PATCH", "/api/v1/devices/{device}"): lambda pop: {
        "description": "changed", "product": pop.params["product"],
        "cohort": pop.params["cohort"],
    },
    ("POST", "/api/v1/devices/import"): lambda pop: [
        {"name": f"{pop.prefix}-gw3", "product": pop.params["product"]}
    ],
    ("POST", "/api/v1/devices/{device}/commands"): lambda pop: {"action": "read", "tag": "t"},
    ("POST", "/api/v1/devices/{device}/certificates"): lambda pop: {
        "csr": csr_pem(pop.params["device"]), "ca": int(pop.params["ca_id"]),
    },
    ("POST", "/api/v1/devices/{device}/tokens"): lambda pop: {"name": "another"},
    ("POST", "/api/v1/products"): lambda pop: {"name": f"{pop.prefix}-prod2"},
    ("PATCH", "/api/v1/products/{product}"): lambda pop: {"description": "changed"},
    ("POST", "/api/v1/cohorts"): lambda pop: {
        "name": f"{pop.prefix}-cohort2", "product": pop.params["product"],
    },
    ("PATCH", "/api/v1/cohorts/{cohort}"): lambda pop: {"description": "changed"},
    ("POST", "/api/v1/cas"): lambda pop: {"name": f"{pop.prefix}-ca2"},
    ("PATCH", "/api/v1/cas/{ca_id}"): lambda pop: {"jit_registration": True},
}

QUERIES: dict[tuple[str, str], Callable[[Population], dict[str, str]]] = {
    ("GET", "/api/v1/devices/{device}/delivery"): lambda pop: {"from_seq": "0", "to_seq": "9"},
    # all-or-nothing: a row naming another org's product fails the whole request (422)
    ("POST", "/api/v1/devices/import"): lambda pop: {"atomic": "true"},
}

PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login")}
"""Routes without an org context: nothing of B's can be reached through them."""


def operations(app: FastAPI) -> list[tuple[str, str, bool]]:
    """(method, path, takes a body) of every /api/v1 operation in the OpenAPI schema."""
    found = []
    for path, item in app.openapi()["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in item.items():
            found.append((method.upper(), path, "requestBody" in operation))
    return sorted(found)


PARAM = re.compile(r"{(\w+)}")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    json: Any
    params: dict[str, str]


def request_for(method: str, path: str, has_body: bool, pop: Population) -> Request:
    """A valid request for the route, aimed at ``pop``'s objects."""
    missing = [name for name in PARAM.findall(path) if name not in pop.params]
    assert not missing, (
        f"{method} {path}: no object for path parameter(s) {missing}; "
        "create one in tenancy_testkit.populate()"
    )
    url = PARAM.sub(lambda m: pop.params[m.group(1)], path)
    body = None
    if has_body:
        maker = BODIES.get((method, path))
        assert maker is not None, (
            f"{method} {path} takes a body: add a valid one to tenancy_testkit.BODIES"
        )
        body = maker(pop)
    query = QUERIES.get((method, path), lambda pop: {})(pop)
    return Request(method, url, body, query)


async def send(
    client: httpx.AsyncClient, request: Request, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(
        request.method, request.url, json=request.json, params=request.params, headers=headers
    )


async def org_state(store: Store, org_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that belongs to ``org_id``, in primary-key order."""
    state: dict[str, list[tuple[Any, ...]]] = {}
    async with store.sessions() as session:
        for table in Base.metadata.sorted_tables:
            if "org_id" not in table.c:
                continue
            state[table.name] = await _rows(session, table, org_id)
    return state


async def _rows(session: Any, table: Table, org_id: int) -> list[tuple[Any, ...]]:
    stmt = select(table).where(table.c.org_id == org_id).order_by(*table.primary_key.columns)
    return [tuple(row) for row in (await session.execute(stmt)).all()]
