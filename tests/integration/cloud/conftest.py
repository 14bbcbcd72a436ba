"""Fixtures for the cloud tests: a database on SQLite and on PostgreSQL, a running app
(lifespan, embedded broker on an ephemeral port), an HTTP client and provisioned orgs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cloud_testkit import Database, Tenant, make_tenant, running
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text

from cloud.app import create_app
from cloud.settings import CloudSettings
from cloud.store.db import Store, create_engine, open_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """An empty database: a SQLite file, or a fresh PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield Database(url=f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}", schema=None)
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield Database(url=url, schema=schema)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await engine.dispose()


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    async with open_store(database.url, schema=database.schema) as opened:
        yield opened


@pytest.fixture
def settings(database: Database) -> CloudSettings:
    return CloudSettings(
        db_url=database.url,
        db_schema=database.schema,
        mqtt_url=None,
        broker_host="127.0.0.1",
        broker_port=0,
        mqtt_client_id=f"test-cloud-{uuid.uuid4().hex[:8]}",
        command_timeout=5.0,
        secret_key=SecretStr("test-secret-key"),
        mqtt_connect_timeout=5.0,
    )


@pytest.fixture
async def app(settings: CloudSettings) -> AsyncIterator[FastAPI]:
    """A started cloud node (store migrated, embedded broker, MQTT ingest connected)."""
    started = create_app(settings)
    async with running(started):
        yield started


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
        yield http


@pytest.fixture
async def tenant(app: FastAPI) -> Tenant:
    """Org ``acme`` with an owner key and the registered gateway ``plant1``."""
    return await make_tenant(app.state.store, "acme", "plant1")


@pytest.fixture
async def other_tenant(app: FastAPI) -> Tenant:
    """A second org, ``globex``, with gateway ``mill1``."""
    return await make_tenant(app.state.store, "globex", "mill1")
