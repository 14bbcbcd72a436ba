"""The whole spine on real sockets: Modbus simulator → gateway (adapter, scheduler, SQLite
buffer, forwarder, MQTT uplink) → broker → cloud ingest → store → REST API, and commands
back down. Run on SQLite with the embedded broker, and on PostgreSQL with Mosquitto."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI
from netproxy import TcpProxy
from sf_helpers import sniff
from sqlalchemy import text

from cloud.app import create_app
from cloud.bootstrap import bootstrap
from cloud.settings import CloudSettings
from cloud.store.db import create_engine
from gateway.buffer import accepted_range
from gateway.config import gateway_config_model
from gateway.runtime import Gateway
from simulators.modbus import ModbusSimulator
from simulators.plant import Plant

pytestmark = [pytest.mark.integration]

QUALITY = {0: "good", 1: "uncertain", 2: "bad"}
TAGS = [
    {"name": "motor1.setpoint", "table": "holding", "address": 0, "type": "uint16"},
    {"name": "motor2.setpoint", "table": "holding", "address": 1, "type": "uint16"},
    {"name": "motor1.speed", "table": "input", "address": 0, "type": "float32"},
    {"name": "tank.level", "table": "input", "address": 6, "type": "uint16", "scale": 0.1},
    {"name": "tank.temperature", "table": "input", "address": 7, "type": "int16",
     "scale": 0.1},
    {"name": "tank.pressure", "table": "input", "address": 8, "type": "float32",
     "order": "CDAB"},
    {"name": "production.count", "table": "input", "address": 10, "type": "uint32"},
]


@dataclass
class Cloud:
    app: FastAPI
    api: httpx.AsyncClient
    broker: tuple[str, int]
    gateway_id: str
    token: str
    """The gateway's device token: its MQTT password."""
    observer: dict[str, str]
    """``aiomqtt.Client`` login of a test observer with full topic rights (the embedded
    broker's internal credential; none on the anonymous CI Mosquitto)."""

    @property
    def uplink_login(self) -> dict[str, str]:
        """The gateway config's ``uplink`` credentials."""
        return {"username": self.gateway_id, "password": self.token}

    async def wait_for(self, predicate: Callable[[Any], bool]) -> None:
        await asyncio.wait_for(self.app.state.ingest.wait_for(predicate), 20)

    async def wait_online(self, device: str, expected: bool, what: str) -> None:
        async def check() -> bool:
            return (await self.api.get(f"/api/v1/devices/{device}")).json()["online"] is expected

        await eventually(check, what)

    async def assert_all_delivered(self, buffer: Path) -> None:
        """Every sequence number the (stopped) gateway's buffer handed out is stored."""
        first, last = accepted_range(buffer)
        assert first is not None and last is not None
        delivery: dict[str, Any] = {}

        async def complete() -> bool:
            # The gateway deletes a batch on the broker's PUBACK, a moment before the
            # cloud commits it: re-read until the last batches have landed.
            nonlocal delivery
            delivery = (await self.api.get(
                f"/api/v1/devices/{self.gateway_id}/delivery",
                params={"from_seq": first, "to_seq": last},
            )).json()
            return bool(delivery["missing"] == 0)

        await eventually(complete, "every accepted sequence number in the cloud")
        assert delivery["count"] == last - first + 1


@asynccontextmanager
async def cloud_node(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Cloud]:
    gateway_id = f"gw-{uuid.uuid4().hex[:10]}"
    schema = None
    if kind == "sqlite-embedded":
        settings = CloudSettings(
            db_url=f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}", broker_port=0,
            mqtt_client_id=f"cloud-{gateway_id}", command_timeout=5.0,
        )
    else:
        db_url = request.getfixturevalue("postgres_url")
        mqtt_url = request.getfixturevalue("mosquitto_url")
        schema = f"e2e_{uuid.uuid4().hex[:12]}"
        # A share group of its own: members of another group (e.g. sessions left by an
        # earlier run on the same broker) must not take a share of this test's messages.
        settings = CloudSettings(
            db_url=db_url, db_schema=schema, mqtt_url=mqtt_url,
            mqtt_client_id=f"cloud-{gateway_id}", mqtt_share_group=f"g-{gateway_id}",
            command_timeout=5.0,
        )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            done = await bootstrap(app.state.store, f"org-{gateway_id}", gateways=[gateway_id])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://cloud",
                headers={"Authorization": f"Bearer {done.api_key}"},
            ) as api:
                observer: dict[str, str] = {}
                if settings.mqtt_url is None:
                    broker = ("127.0.0.1", app.state.broker_port)
                    internal = app.state.broker.internal
                    observer = {"username": internal.username, "password": internal.password}
                else:
                    parts = urlsplit(settings.mqtt_url)
                    broker = (parts.hostname or "127.0.0.1", parts.port or 1883)
                yield Cloud(app, api, broker, gateway_id, done.tokens[gateway_id], observer)
    finally:
        if settings.mqtt_url is not None:
            for client_id in (settings.mqtt_client_id, f"fieldgate-{gateway_id}"):
                await purge_session(settings.mqtt_url, client_id)
        if schema is not None:
            engine = create_engine(settings.db_url)
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()


async def purge_session(url: str, client_id: str) -> None:
    """Remove a persistent session (cloud node, gateway) left on the shared broker."""
    parts = urlsplit(url)
    async with aiomqtt.Client(
        parts.hostname or "127.0.0.1", parts.port or 1883, identifier=client_id,
        clean_session=True,
    ):
        pass


@pytest.fixture(params=[
    "sqlite-embedded", pytest.param("postgresql-mosquitto", marks=pytest.mark.services),
])
async def cloud(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cloud]:
    async with cloud_node(request.param, tmp_path, request) as node:
        yield node


def gateway_config(cloud: Cloud, broker_port: int, modbus_port: int, buffer: Path) -> Any:
    return gateway_config_model().model_validate({
        "gateway": {"id": cloud.gateway_id, "status_interval": "1s", "shutdown_drain": "5s"},
        "buffer": {"path": str(buffer)},
        "uplink": {"url": f"mqtt://127.0.0.1:{broker_port}", "reconnect_min": 0.1,
                   "reconnect_max": 0.5, **cloud.uplink_login},
        "devices": [{
            "type": "modbus", "name": "plc1", "host": "127.0.0.1", "port": modbus_port,
            "interval": "100ms", "tags": TAGS,
        }],
    })


@asynccontextmanager
async def running_gateway(config: Any) -> AsyncIterator[Gateway]:
    gateway = Gateway(config)
    task = asyncio.create_task(gateway.run(), name="gateway")
    await asyncio.wait_for(gateway.started.wait(), 10)
    try:
        yield gateway
    finally:
        gateway.stop()
        await asyncio.wait_for(task, 15)


def iso(ms: int) -> str:
    """The API's timestamp format: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """For state only observable through the API (no event to await): bounded re-checks."""
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_values_arrive_unchanged_and_commands_reach_the_device(
    cloud: Cloud, tmp_path: Path
) -> None:
    plant = Plant(seed=11)
    plant.set_setpoint("motor1.setpoint", 1111)
    plant.set_setpoint("motor2.setpoint", 2222)
    buffer = tmp_path / "buffer.db"
    gw = cloud.gateway_id
    field_device = f"{gw}.plc1"
    async with ModbusSimulator(plant) as sim, sniff(cloud.broker, gw, cloud.observer) as wire:
        config = gateway_config(cloud, cloud.broker[1], sim.port, buffer)
        async with running_gateway(config):
            await wire.wait_for(lambda w: len(w.batches) >= 1)
            await cloud.wait_for(lambda s: s.points >= 3 * len(TAGS))

            # Every reading the gateway sent is in the API with the same value, time, quality.
            _, batch = wire.batches[0]
            for index in range(len(batch)):
                device, tag = batch.series[batch.s[index]]
                ts = batch.t[index]
                response = await cloud.api.get(
                    f"/api/v1/devices/{gw}.{device}/telemetry",
                    params={"tag": tag, "start": iso(ts), "end": iso(ts + 1)},
                )
                assert response.status_code == 200, response.text
                [point] = response.json()["items"]
                assert point["value"] == batch.val[index]
                assert type(point["value"]) is type(batch.val[index])
                assert point["ts"] == iso(ts)
                assert point["quality"] == QUALITY[batch.q[index] if batch.q else 0]

            latest = (await cloud.api.get(f"/api/v1/devices/{field_device}/latest")).json()
            values = {v["tag"]: v for v in latest["values"]}
            assert set(values) == {t["name"] for t in TAGS}
            assert values["motor1.setpoint"]["value"] == 1111
            assert values["motor2.setpoint"]["value"] == 2222
            assert all(v["quality"] == "good" for v in values.values())
            assert 0 <= values["tank.level"]["value"] <= 100

            devices = (await cloud.api.get("/api/v1/devices")).json()["items"]
            by_name = {d["name"]: d for d in devices}
            assert by_name[gw]["kind"] == "gateway"
            assert by_name[field_device]["parent"] == gw
            await cloud.wait_online(field_device, True, "the device_connected event")
            await cloud.wait_online(gw, True, "the gateway's online status")

            # Downlink: write and read a tag through the API, gateway and Modbus.
            response = await cloud.api.post(
                f"/api/v1/devices/{field_device}/commands",
                json={"action": "write", "tag": "motor1.setpoint", "value": 1750},
            )
            assert response.status_code == 200, response.text
            assert response.json()["ok"] is True
            assert plant.setpoint("motor1.setpoint") == 1750
            response = await cloud.api.post(
                f"/api/v1/devices/{field_device}/commands",
                json={"action": "read", "tag": "motor1.setpoint"},
            )
            assert (response.json()["ok"], response.json()["value"]) == (True, 1750)
            response = await cloud.api.post(
                f"/api/v1/devices/{field_device}/commands",
                json={"action": "write", "tag": "tank.level", "value": 5},
            )
            result = response.json()
            assert (result["ok"], result["code"]) == (False, "read_only")
            assert "read-only" in result["error"]

        # The gateway stopped (delivering its backlog first): nothing it accepted is missing.
        await cloud.assert_all_delivered(buffer)
        await cloud.wait_online(gw, False, "the gateway's offline status")

        response = await cloud.api.post(
            f"/api/v1/devices/{field_device}/commands",
            json={"action": "read", "tag": "motor1.setpoint"},
        )
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.slow
async def test_uplink_outage_loses_nothing(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The link between gateway and broker dies for a while; polling goes on, the backlog
    is delivered after the link returns, and every sequence number arrives."""
    buffer = tmp_path / "buffer.db"
    async with cloud_node("sqlite-embedded", tmp_path, request) as cloud:
        async with (
            ModbusSimulator(Plant(seed=12)) as sim,
            TcpProxy(*cloud.broker, port=request.getfixturevalue("rebindable_port")) as link,
        ):
            config = gateway_config(cloud, link.port, sim.port, buffer)
            async with running_gateway(config) as gateway:
                assert gateway.uplink is not None and gateway.buffer is not None
                await cloud.wait_for(lambda s: s.points > 0)
                await link.cut()
                await asyncio.wait_for(gateway.uplink.wait_disconnected(), 10)
                # The broker saw the link die without a DISCONNECT: it sends the Last Will.
                await cloud.wait_online(cloud.gateway_id, False, "the Last Will (offline)")
                cut_at = gateway.buffer.last_seq or 0
                # Polling continues during the outage: 20 more polls of every tag.
                await asyncio.wait_for(
                    gateway.buffer.wait_for_data(cut_at + 20 * len(TAGS)), 15
                )
                stored_during_outage = cloud.app.state.ingest.stats.points
                await link.restore()
                await asyncio.wait_for(gateway.uplink.wait_connected(), 10)
                await cloud.wait_online(cloud.gateway_id, True, "online after the reconnect")
                await cloud.wait_for(lambda s: s.points >= stored_during_outage + 20 * len(TAGS))
        await cloud.assert_all_delivered(buffer)
