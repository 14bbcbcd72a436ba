"""Command round trips through the embedded broker with a fake gateway that is a real MQTT
peer: it receives ``cmd/{id}`` and answers on ``cmd-result/{id}``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import httpx
import pytest
from cloud_testkit import T0, Tenant, internal_login, make_batch
from fastapi import FastAPI

from cloud.contract import CMD, CMD_RESULT, STATUS, Command, CommandResult, topic
from cloud.ingest.service import IngestService

pytestmark = pytest.mark.integration


@asynccontextmanager
async def fake_gateway(
    port: int, tenant: Tenant, *, answer: bool = True
) -> AsyncIterator[list[Command]]:
    """A gateway that reads/writes an in-memory tag table; yields the commands it got."""
    tags: dict[str, object] = {"setpoint": 20.5}
    received: list[Command] = []
    name = tenant.gateway
    async with aiomqtt.Client("127.0.0.1", port, identifier=name, **tenant.mqtt) as client:
        await client.subscribe(f"fg/v1/{name}/{CMD}/+", qos=1)

        async def serve() -> None:
            async for message in client.messages:
                command = Command.model_validate_json(message.payload)  # type: ignore[arg-type]
                received.append(command)
                if not answer:
                    continue
                now = int(time.time() * 1000)
                if command.tag not in tags:
                    result = CommandResult(id=command.id, ok=False, ts=now, code="unknown_tag",
                                           error=f"no tag {command.tag!r}")
                elif command.action == "write":
                    tags[command.tag] = command.value
                    result = CommandResult(id=command.id, ok=True, ts=now, value=command.value,
                                           quality=0)
                else:
                    result = CommandResult(id=command.id, ok=True, ts=now,
                                           value=tags[command.tag], quality=0)  # type: ignore[arg-type]
                await client.publish(
                    topic(name, CMD_RESULT, command.id), result.model_dump_json(), qos=1
                )

        task = asyncio.create_task(serve(), name="fake-gateway")
        try:
            yield received
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def set_online(app: FastAPI, port: int, name: str, online: bool) -> None:
    ingest: IngestService = app.state.ingest
    before = ingest.stats.statuses
    state = "online" if online else "offline"
    async with aiomqtt.Client("127.0.0.1", port, **internal_login(app)) as client:
        await client.publish(
            topic(name, STATUS), f'{{"state": "{state}", "ts": {T0}}}', qos=1, retain=True
        )
        async with asyncio.timeout(10):
            await ingest.wait_for(lambda s: s.statuses > before)


async def test_write_and_read_round_trip(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    port = app.state.broker_port
    await app.state.ingest.ingest_telemetry(
        "plant1", make_batch(0, [("pump1", "setpoint", T0, 1.0)])
    )
    await set_online(app, port, "plant1", True)
    async with fake_gateway(port, tenant) as received:
        write = await client.post(
            "/api/v1/devices/plant1.pump1/commands",
            json={"action": "write", "tag": "setpoint", "value": 42.5},
            headers=tenant.headers,
        )
        assert write.status_code == 200, write.text
        assert write.json()["ok"] is True and write.json()["value"] == 42.5
        assert write.json()["quality"] == "good" and write.json()["ts"].endswith("Z")

        read = await client.post(
            "/api/v1/devices/plant1.pump1/commands",
            json={"action": "read", "tag": "setpoint"},
            headers=tenant.headers,
        )
        assert read.json()["value"] == 42.5

        unknown = await client.post(
            "/api/v1/devices/plant1/commands",
            json={"action": "read", "tag": "nope"},
            headers=tenant.headers,
        )
        assert unknown.status_code == 200
        assert unknown.json()["ok"] is False and unknown.json()["code"] == "unknown_tag"

    first = received[0]
    assert first.device == "pump1" and first.action == "write" and first.value == 42.5
    assert first.deadline is not None and first.deadline > int(time.time() * 1000)
    assert received[2].device is None  # addressed to the gateway itself
    assert app.state.dispatcher.pending == 0


async def test_no_answer_is_504(app: FastAPI, client: httpx.AsyncClient, tenant: Tenant) -> None:
    port = app.state.broker_port
    await set_online(app, port, "plant1", True)
    async with fake_gateway(port, tenant, answer=False) as received:
        started = time.monotonic()
        response = await client.post(
            "/api/v1/devices/plant1/commands",
            json={"action": "read", "tag": "setpoint", "timeout": 0.5},
            headers=tenant.headers,
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "did not answer" in response.json()["detail"]
    assert response.json()["request_id"] == received[0].id
    assert 0.4 < elapsed < 3
    assert app.state.dispatcher.pending == 0


async def test_offline_gateway_fails_fast(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    never = await client.post(
        "/api/v1/devices/plant1/commands", json={"action": "read", "tag": "x"},
        headers=tenant.headers,
    )
    assert never.status_code == 409 and "never connected" in never.json()["detail"]

    await set_online(app, app.state.broker_port, "plant1", False)
    started = time.monotonic()
    offline = await client.post(
        "/api/v1/devices/plant1/commands", json={"action": "read", "tag": "x"},
        headers=tenant.headers,
    )
    assert time.monotonic() - started < 1
    assert offline.status_code == 409
    assert offline.headers["content-type"] == "application/problem+json"
    assert "is offline (last seen" in offline.json()["detail"]


async def test_command_validation_and_tenancy(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    missing_value = await client.post(
        "/api/v1/devices/plant1/commands", json={"action": "write", "tag": "x"},
        headers=tenant.headers,
    )
    assert missing_value.status_code == 422 and "needs a 'value'" in missing_value.json()["detail"]
    bad_action = await client.post(
        "/api/v1/devices/plant1/commands", json={"action": "explode"}, headers=tenant.headers
    )
    assert bad_action.status_code == 422 and "'action'" in bad_action.json()["detail"]
    foreign = await client.post(
        "/api/v1/devices/mill1/commands", json={"action": "read", "tag": "x"},
        headers=tenant.headers,
    )
    assert foreign.status_code == 404
