"""Property-based run over the OpenAPI schema (schemathesis + hypothesis): every operation
gets generated and mutated inputs — wrong types, huge numbers, odd strings, unknown
fields — from an authenticated owner and from nobody, and never answers 5xx.

The node runs in uvicorn on an ephemeral port (a real HTTP server, real database); one
test per operation, so a failure names it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from cloud_testkit import make_tenant
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis.schemas import APIOperation
from sqlalchemy import text

from cloud.app import create_app
from cloud.settings import CloudSettings
from cloud.store.db import create_engine, open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPENAPI = create_app(CloudSettings(db_url="sqlite+aiosqlite:///:memory:")).openapi()
SCHEMA = schemathesis.openapi.from_dict(OPENAPI)
OPERATIONS: list[APIOperation] = [result.ok() for result in SCHEMA.get_all_operations()]
EXAMPLES = 25


class Node:
    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url
        self.headers = headers


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
)
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    schema = None
    if request.param == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'cloud.db'}"
    else:
        db_url = request.getfixturevalue("postgres_url")
        schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    tenant = asyncio.run(_provision(db_url, schema))
    settings_ = CloudSettings(
        db_url=db_url, db_schema=schema, broker_port=0, rate_limit=0,
        secret_key=SecretStr("fuzz-secret"),
        mqtt_client_id=f"fuzz-{uuid.uuid4().hex[:8]}", mqtt_connect_timeout=5.0,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings_), host="127.0.0.1", port=0, log_level="critical")
    )
    thread = threading.Thread(target=server.run, name="fuzz-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the cloud node did not start")
        time.sleep(0.02)  # polling a thread's flag: there is no event to await across loops
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Node(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {tenant}"})
    server.should_exit = True
    thread.join(20)
    if schema is not None:
        asyncio.run(_drop_schema(db_url, schema))


async def _provision(db_url: str, schema: str | None) -> str:
    async with open_store(db_url, schema=schema) as store:
        tenant = await make_tenant(store, "fuzz", "plant1")
    return tenant.key


async def _drop_schema(db_url: str, schema: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_input_makes_the_api_fail_with_5xx(node: Node, operation: APIOperation) -> None:
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        for headers in (node.headers, {}):
            response = case.call(base_url=node.base_url, headers=headers, timeout=10)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:500]}"
            )
            if response.status_code >= 400:
                content_type = response.headers.get("content-type", [""])[0]
                assert content_type.startswith("application/problem+json"), content_type

    run()


def test_the_schema_lists_every_route() -> None:
    """The fuzz covers the whole API: every /api/v1 and /device/v1 route is in OpenAPI."""
    paths = set(OPENAPI["paths"])
    assert "/api/v1/devices" in paths and "/api/v1/users/{user_id}" in paths
    assert len(OPERATIONS) >= 20


