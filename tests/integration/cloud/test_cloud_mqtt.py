"""End-to-end MQTT ingest: a real publisher, a real broker, the stored result via the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiomqtt
import httpx
import pytest
from cloud_testkit import (
    T0,
    Database,
    batch_bytes,
    counter_batch,
    internal_login,
    make_tenant,
    running,
)
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from cloud.app import create_app
from cloud.contract import STATUS, TELEMETRY, TelemetryBatch, topic
from cloud.ingest.service import IngestResult, IngestService, IngestStats
from cloud.settings import CloudSettings

pytestmark = pytest.mark.integration

WAIT = 15.0


async def wait_for(ingest: IngestService, predicate: object) -> None:
    async with asyncio.timeout(WAIT):
        await ingest.wait_for(predicate)  # type: ignore[arg-type]


async def test_embedded_broker_ingest_end_to_end(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(app.state.store, "acme", "plant1")
    ingest: IngestService = app.state.ingest
    port = app.state.broker_port
    assert isinstance(port, int) and port > 0

    async with aiomqtt.Client("127.0.0.1", port, identifier="plant1", **tenant.mqtt) as gateway:
        for first in range(0, 1000, 250):
            await gateway.publish(topic("plant1", TELEMETRY), counter_batch(first, 250), qos=1)
        # re-delivery of a batch (the gateway lost the PUBACK) stores nothing new
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 250), qos=1)
        await wait_for(ingest, lambda s: s.batches >= 5)

    delivery = await client.get(
        "/api/v1/devices/plant1/delivery", params={"from_seq": 0, "to_seq": 999},
        headers=tenant.headers,
    )
    assert delivery.json()["count"] == 1000 and delivery.json()["missing"] == 0
    latest = await client.get("/api/v1/devices/plant1.pump1/latest", headers=tenant.headers)
    assert latest.json()["values"] == [
        {"tag": "flow", "value": 999, "ts": "2026-01-01T00:00:00.999Z", "quality": "good",
         "reason": None}
    ]


async def test_malformed_payloads_do_not_stop_ingest(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(app.state.store, "acme", "plant1")
    ingest: IngestService = app.state.ingest
    port = app.state.broker_port
    async with (
        aiomqtt.Client("127.0.0.1", port, **tenant.mqtt) as gateway,
        aiomqtt.Client("127.0.0.1", port, **internal_login(app)) as unconfined,
    ):
        telemetry = topic("plant1", TELEMETRY)
        await gateway.publish(telemetry, b"{not json", qos=1)
        await gateway.publish(telemetry, b'{"v": 1, "first": 0, "series": [], "s": []}', qos=1)
        await gateway.publish(telemetry, batch_bytes(0, [("bad.name", "t", T0, 1)]), qos=1)
        await gateway.publish(topic("plant1", STATUS), b'{"state": "sideways"}', qos=1)
        # no gateway may publish as an unregistered one; only a full-rights client can
        await unconfined.publish(topic("ghost", TELEMETRY), counter_batch(0, 10), qos=1)
        await gateway.publish(telemetry, counter_batch(0, 10), qos=1)

        def done(stats: IngestStats) -> bool:
            return stats.malformed >= 4 and stats.batches >= 1 and stats.unknown_gateway >= 1

        await wait_for(ingest, done)
    assert ingest.stats.malformed == 4 and ingest.stats.failed == 0
    page = await client.get("/api/v1/devices/plant1.pump1/telemetry", headers=tenant.headers)
    assert len(page.json()["items"]) == 10
    assert app.state.mqtt.connected


async def test_status_over_mqtt_sets_online(app: FastAPI, client: httpx.AsyncClient) -> None:
    tenant = await make_tenant(app.state.store, "acme", "plant1")
    ingest: IngestService = app.state.ingest
    status = topic("plant1", STATUS)
    async with aiomqtt.Client(
        "127.0.0.1", app.state.broker_port, identifier="plant1", **tenant.mqtt
    ) as gateway:
        await gateway.publish(
            status,
            b'{"state": "online", "ts": 1767225600000, "version": "0.1.0",'
            b' "buffer": {"depth": 3, "bytes": 100}, "devices": {"pump1": false}}',
            qos=1, retain=True,
        )
        await wait_for(ingest, lambda s: s.statuses >= 1)
        device = (await client.get("/api/v1/devices/plant1", headers=tenant.headers)).json()
        assert device["online"] is True and device["status"]["buffer"]["depth"] == 3
        pump = (await client.get("/api/v1/devices/plant1.pump1", headers=tenant.headers)).json()
        assert pump["online"] is False and pump["parent"] == "plant1"
        # what the broker publishes as the gateway's Last Will
        await gateway.publish(status, b'{"state": "offline", "ts": 1767225601000}', qos=1)
        await gateway.publish(status, b"", qos=1, retain=True)  # clearing a retained status
        await wait_for(ingest, lambda s: s.statuses >= 2)
    device = (await client.get("/api/v1/devices/plant1", headers=tenant.headers)).json()
    assert device["online"] is False and device["last_seen_at"].endswith("Z")


@pytest.fixture
async def mosquitto_app(
    database: Database, mosquitto_url: str
) -> AsyncIterator[FastAPI]:
    """A node on the external Mosquitto; its persistent session is purged afterwards so
    that no stale member of the ``$share/fieldgate`` group keeps receiving messages."""
    client_id = f"test-cloud-{uuid.uuid4().hex[:8]}"
    settings = CloudSettings(
        db_url=database.url, db_schema=database.schema, mqtt_url=mosquitto_url,
        mqtt_client_id=client_id, mqtt_connect_timeout=5.0,
    )
    started = create_app(settings)
    try:
        async with running(started):
            yield started
    finally:
        url = urlsplit(mosquitto_url)
        async with aiomqtt.Client(
            url.hostname or "127.0.0.1", url.port or 1883, identifier=client_id,
            clean_session=True,
        ):
            pass


@pytest.mark.services
async def test_mosquitto_ingest_via_shared_subscription(
    mosquitto_app: FastAPI, mosquitto_url: str
) -> None:
    app = mosquitto_app
    assert app.state.broker_port is None
    assert app.state.mqtt.telemetry_subscription.startswith("$share/fieldgate/")
    name = f"gw-{uuid.uuid4().hex[:10]}"  # the broker is shared with other tests
    tenant = await make_tenant(app.state.store, "acme", name)
    ingest: IngestService = app.state.ingest
    url = urlsplit(mosquitto_url)
    async with aiomqtt.Client(url.hostname or "127.0.0.1", url.port or 1883) as gateway:
        await asyncio.gather(*(
            gateway.publish(topic(name, TELEMETRY), counter_batch(first, 100), qos=1)
            for first in range(0, 2000, 100)
        ))
        await wait_for(ingest, lambda s: s.points >= 2000)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as client:
        delivery = await client.get(
            f"/api/v1/devices/{name}/delivery", params={"from_seq": 0, "to_seq": 1999},
            headers=tenant.headers,
        )
    assert delivery.json()["count"] == 2000


async def test_store_outage_is_retried_without_losing_messages(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    tenant = await make_tenant(app.state.store, "acme", "plant1")
    ingest: IngestService = app.state.ingest
    real = ingest.ingest_telemetry_many
    failures = 0

    async def flaky(items: list[tuple[str, TelemetryBatch]]) -> list[IngestResult]:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database is down"))
        return await real(items)

    ingest.ingest_telemetry_many = flaky  # type: ignore[method-assign]
    async with aiomqtt.Client("127.0.0.1", app.state.broker_port, **tenant.mqtt) as gateway:
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 50), qos=1)
        await wait_for(ingest, lambda s: s.points >= 50)
    assert failures == 2 and ingest.stats.failed == 0
    delivery = await client.get(
        "/api/v1/devices/plant1/delivery", params={"from_seq": 0, "to_seq": 49},
        headers=tenant.headers,
    )
    assert delivery.json()["count"] == 50
