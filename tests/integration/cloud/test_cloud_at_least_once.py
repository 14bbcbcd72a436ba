"""At-least-once through a node restart: a message is acknowledged only after its commit,
and the persistent session keeps what arrives while the node is down (external Mosquitto)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiomqtt
import pytest
from cloud_testkit import Database, counter_batch, running
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import bootstrap
from cloud.contract import TELEMETRY, TelemetryBatch, topic
from cloud.ingest.service import IngestResult, IngestService
from cloud.settings import CloudSettings
from cloud.store.db import open_store

pytestmark = [pytest.mark.integration, pytest.mark.services]


@pytest.fixture
async def node_settings(database: Database, mosquitto_url: str) -> AsyncIterator[CloudSettings]:
    client_id = f"test-cloud-{uuid.uuid4().hex[:8]}"
    yield CloudSettings(
        db_url=database.url, db_schema=database.schema, mqtt_url=mosquitto_url,
        mqtt_client_id=client_id, mqtt_connect_timeout=5.0,
    )
    url = urlsplit(mosquitto_url)
    async with aiomqtt.Client(url.hostname or "127.0.0.1", url.port or 1883,
                              identifier=client_id, clean_session=True):
        pass  # purge the persistent session


async def test_unacknowledged_and_offline_messages_are_redelivered(
    node_settings: CloudSettings, mosquitto_url: str
) -> None:
    gateway = f"gw-{uuid.uuid4().hex[:10]}"
    async with open_store(node_settings.db_url, schema=node_settings.db_schema) as store:
        await bootstrap(store, "acme", gateways=[gateway], issue_owner_key=False)
    url = urlsplit(mosquitto_url)
    host, port = url.hostname or "127.0.0.1", url.port or 1883

    # 1. the node receives a batch but stops before committing it: no PUBACK is sent
    app: FastAPI = create_app(node_settings)
    async with running(app):
        ingest: IngestService = app.state.ingest
        entered = asyncio.Event()

        async def stuck(items: list[tuple[str, TelemetryBatch]]) -> list[IngestResult]:
            entered.set()
            await asyncio.Event().wait()  # the database never answers
            raise AssertionError("unreachable")

        ingest.ingest_telemetry_many = stuck  # type: ignore[method-assign]
        async with aiomqtt.Client(host, port) as publisher:
            await publisher.publish(topic(gateway, TELEMETRY), counter_batch(0, 100), qos=1)
            async with asyncio.timeout(10):
                await entered.wait()
    # 2. while the node is down, the gateway keeps sending
    async with aiomqtt.Client(host, port) as publisher:
        await publisher.publish(topic(gateway, TELEMETRY), counter_batch(100, 100), qos=1)

    # 3. the restarted node (same client id) gets both from its persistent session
    app = create_app(node_settings)
    async with running(app):
        ingest = app.state.ingest
        async with asyncio.timeout(15):
            await ingest.wait_for(lambda s: s.points >= 200)
        assert ingest.stats.batches == 2
