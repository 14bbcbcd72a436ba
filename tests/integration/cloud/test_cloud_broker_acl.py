"""The embedded broker's plain listener on a running cloud node: gateways log in with their
device token (username = gateway name), the cloud with its internal credential, nobody
anonymously; a gateway publishes, subscribes and receives only under fg/v1/{its name}/.
Real sockets, the real app and its store-backed device authority."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from aiomqtt.exceptions import MqttConnectError
from cloud_testkit import Tenant, counter_batch, internal_login, make_tenant, running
from fastapi import FastAPI
from mtls_testkit import watch_log
from paho.mqtt.reasoncodes import ReasonCode
from typer.testing import CliRunner

from cloud.app import create_app
from cloud.broker import EmbeddedBroker
from cloud.cli import app as cli
from cloud.contract import CMD, STATUS, TELEMETRY, GatewayStatus, topic
from cloud.ingest.service import IngestService
from cloud.settings import CloudSettings
from gateway.config import MqttUplinkConfig
from gateway.uplink.mqtt import MqttUplink

pytestmark = pytest.mark.integration

BAD_CREDENTIALS, NOT_AUTHORIZED, IDENTIFIER_REJECTED = 134, 135, 133
"""CONNACK refusals as paho reports them (the MQTT 5 reason codes of 3.1.1's 4, 5, 2)."""
REFUSED_SUBSCRIPTION = 0x80


async def refusal(port: int, **kwargs: Any) -> int:
    """The reason code with which the broker refuses this connection (fails if accepted)."""
    try:
        async with aiomqtt.Client("127.0.0.1", port, timeout=5, **kwargs):
            pass
    except MqttConnectError as exc:
        assert isinstance(exc.rc, ReasonCode)
        return int(exc.rc.value)
    raise AssertionError(f"the broker accepted {kwargs}")


def codes(granted: Any) -> list[int]:
    return [c.value if isinstance(c, ReasonCode) else int(c) for c in granted]


async def test_tokens_internal_credential_and_anonymous(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    port = app.state.broker_port
    ingest: IngestService = app.state.ingest
    async with aiomqtt.Client("127.0.0.1", port, identifier="plant1", **tenant.mqtt) as gateway:
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 10), qos=1)
        async with asyncio.timeout(10):
            await ingest.wait_for(lambda s: s.points >= 10)

    assert await refusal(port, username="plant1", password="fgd_" + "x" * 43) == BAD_CREDENTIALS
    assert await refusal(port, username="plant1", password="not-a-token") == BAD_CREDENTIALS
    # the token of mill1 (another org's gateway) under plant1's name, and the other way round
    assert await refusal(port, username="plant1", password=other_tenant.token) == BAD_CREDENTIALS
    assert await refusal(port, username="mill1", password=tenant.token) == BAD_CREDENTIALS
    assert await refusal(port, username="$fieldgate-cloud-guess", password="x") == BAD_CREDENTIALS
    assert await refusal(port) == NOT_AUTHORIZED  # anonymous
    # the cloud's own credential has full rights
    async with aiomqtt.Client("127.0.0.1", port, **internal_login(app)) as cloud:
        assert codes(await cloud.subscribe("#", qos=1)) == [1]

    # a revoked token, then a revoked device (with its remaining tokens), via the API
    extra = await client.post(
        "/api/v1/devices/plant1/tokens", json={"name": "spare"}, headers=tenant.headers
    )
    assert extra.status_code == 201, extra.text
    spare = extra.json()["token"]
    async with aiomqtt.Client("127.0.0.1", port, username="plant1", password=spare):
        pass
    revoked = await client.delete(
        f"/api/v1/devices/plant1/tokens/{extra.json()['id']}", headers=tenant.headers
    )
    assert revoked.status_code == 200, revoked.text
    assert await refusal(port, username="plant1", password=spare) == BAD_CREDENTIALS
    device = await client.post("/api/v1/devices/plant1/revoke", headers=tenant.headers)
    assert device.status_code == 200, device.text
    assert await refusal(port, **tenant.mqtt) == BAD_CREDENTIALS


async def test_client_ids_and_sessions_of_others_are_refused(
    app: FastAPI, settings: CloudSettings, tenant: Tenant
) -> None:
    port = app.state.broker_port
    for client_id in ("fieldgate-mill1", "mill1", "fieldgate-plant10", "fieldgate-plant1-x"):
        assert await refusal(port, identifier=client_id, **tenant.mqtt) == IDENTIFIER_REJECTED
    for client_id in ("plant1", "fieldgate-plant1", "fieldgate-plant1:bench-2"):
        async with aiomqtt.Client("127.0.0.1", port, identifier=client_id, **tenant.mqtt):
            pass

    # A gateway whose name is the cloud node's client id may not take over its session
    # (which holds the unacknowledged telemetry).
    rogue = await make_tenant(app.state.store, "rogue", settings.mqtt_client_id)
    assert await refusal(port, identifier=rogue.gateway, **rogue.mqtt) == IDENTIFIER_REJECTED
    assert app.state.mqtt.connected
    ingest: IngestService = app.state.ingest
    async with aiomqtt.Client("127.0.0.1", port, **tenant.mqtt) as gateway:
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 5), qos=1)
        async with asyncio.timeout(10):
            await ingest.wait_for(lambda s: s.points >= 5)


async def test_publishing_under_another_gateway_is_dropped(
    app: FastAPI,
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = app.state.broker_port
    ingest: IngestService = app.state.ingest
    async with (
        aiomqtt.Client("127.0.0.1", port, identifier="observer", **internal_login(app)) as seen,
        aiomqtt.Client("127.0.0.1", port, **tenant.mqtt) as gateway,
    ):
        await seen.subscribe("fg/v1/+/+", qos=1)
        await gateway.publish(topic("mill1", TELEMETRY), counter_batch(0, 10), qos=1)
        await gateway.publish(topic("mill1", STATUS), b'{"state":"online","ts":1}', qos=1)
        await gateway.publish(topic("plant1", TELEMETRY), counter_batch(0, 10), qos=1)
        # one publisher's messages arrive in order: the first one seen must be the last sent
        async with asyncio.timeout(10):
            message = await anext(seen.messages)
        assert message.topic.value == topic("plant1", TELEMETRY)
        async with asyncio.timeout(10):
            await ingest.wait_for(lambda s: s.points >= 10)
    assert ingest.stats.points == 10 and ingest.stats.statuses == 0
    mill1 = await client.get(
        "/api/v1/devices/mill1/delivery", params={"from_seq": 0, "to_seq": 9},
        headers=other_tenant.headers,
    )
    assert mill1.json()["count"] == 0
    assert "may not publish on 'fg/v1/mill1/telemetry'" in caplog.text


async def test_subscriptions_stay_under_the_gateways_own_topics(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    port = app.state.broker_port
    async with (
        aiomqtt.Client("127.0.0.1", port, **internal_login(app)) as cloud,
        aiomqtt.Client("127.0.0.1", port, identifier="plant1", **tenant.mqtt) as gateway,
    ):
        filters = [
            "fg/v1/+/telemetry", "#", "fg/#", "fg/v1/#", "$SYS/#", "+/v1/plant1/cmd/+",
            "fg/v1/mill1/cmd/+", "fg/v1/plant1", "fg/v1/plant1/cmd/+", "fg/v1/plant1/#",
        ]
        granted = codes(await gateway.subscribe([(f, 1) for f in filters]))
        assert granted == [REFUSED_SUBSCRIPTION] * 8 + [1, 1]
        # commands of another gateway do not reach it; its own do
        await cloud.publish(topic("mill1", CMD, "r1"), b"theirs", qos=1)
        await cloud.publish(topic("plant1", CMD, "r2"), b"mine", qos=1)
        async with asyncio.timeout(10):
            message = await anext(gateway.messages)
        assert (message.topic.value, message.payload) == (topic("plant1", CMD, "r2"), b"mine")


async def test_a_will_on_another_gateways_topic_is_refused(app: FastAPI, tenant: Tenant) -> None:
    will = aiomqtt.Will(topic("mill1", STATUS), b'{"state":"offline","ts":1}', qos=1)
    port = app.state.broker_port
    assert await refusal(port, will=will, **tenant.mqtt) == NOT_AUTHORIZED
    own = aiomqtt.Will(topic("plant1", STATUS), b'{"state":"offline","ts":1}', qos=1)
    async with aiomqtt.Client("127.0.0.1", port, will=own, **tenant.mqtt):
        pass


async def test_anonymous_only_when_opted_in(caplog: pytest.LogCaptureFixture) -> None:
    async with EmbeddedBroker("127.0.0.1", 0) as strict:
        assert await refusal(strict.port) == NOT_AUTHORIZED
    with caplog.at_level(logging.WARNING, logger="cloud.broker"):
        async with (
            EmbeddedBroker("127.0.0.1", 0, allow_anonymous=True) as open_broker,
            aiomqtt.Client("127.0.0.1", open_broker.port) as anonymous,
        ):
            assert codes(await anonymous.subscribe("#", qos=1)) == [1]
    assert "accepts anonymous clients" in caplog.text and "development only" in caplog.text


async def test_uplink_reports_a_refused_login_and_keeps_retrying(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    async def status() -> GatewayStatus:
        return GatewayStatus(state="online", ts=0)

    url = f"mqtt://127.0.0.1:{app.state.broker_port}"
    fast = {"reconnect_min": 0.05, "reconnect_max": 0.1}
    wrong_password = MqttUplinkConfig(url=url, username="plant1", password="fgd_wrong", **fast)
    with watch_log("gateway.uplink.mqtt") as log:
        async with MqttUplink(wrong_password, "plant1", status) as uplink:
            await log.wait_for(lambda m: sum("unavailable" in x for x in m) >= 3)
            assert not uplink.connected and uplink.connects == 0
            assert uplink.last_error is not None
            assert "refused the connection ([code:134] Bad user name or password)" in (
                uplink.last_error
            )
            assert "uplink.password" in uplink.last_error

    # mill1's valid credentials in plant1's gateway: refused for the client id
    # fieldgate-plant1, and with mill1's client id for the Last Will on plant1's status.
    borrowed = MqttUplinkConfig(url=url, **other_tenant.mqtt, **fast)
    with watch_log("gateway.uplink.mqtt") as log:
        async with MqttUplink(borrowed, "plant1", status) as uplink:
            await log.wait_for(lambda m: sum("unavailable" in x for x in m) >= 2)
            assert not uplink.connected and uplink.connects == 0
            assert uplink.last_error is not None
            assert "[code:133] Client identifier not valid" in uplink.last_error
            assert "the gateway's own credentials" in uplink.last_error
    disguised = borrowed.model_copy(update={"client_id": "fieldgate-mill1"})
    with watch_log("gateway.uplink.mqtt") as log:
        async with MqttUplink(disguised, "plant1", status) as uplink:
            await log.wait_for(lambda m: sum("unavailable" in x for x in m) >= 2)
            assert not uplink.connected and uplink.connects == 0
            assert uplink.last_error is not None
            assert "[code:135] Not authorized" in uplink.last_error
            assert "the credentials of another gateway" in uplink.last_error

    good = MqttUplinkConfig(url=url, **tenant.mqtt, **fast)
    async with MqttUplink(good, "plant1", status) as uplink:
        async with asyncio.timeout(10):
            await uplink.wait_connected()
        assert uplink.last_error is None


def test_cli_prints_a_gateway_token_that_logs_in(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'cloud.db'}"
    runner = CliRunner()
    init = runner.invoke(cli, ["init", "--db", db, "--org", "acme", "--gateway", "plant1"])
    assert init.exit_code == 0, init.output
    added = runner.invoke(cli, ["gateway", "add", "plant2", "--org", "acme", "--db", db])
    assert added.exit_code == 0, added.output
    tokens = dict(re.findall(r"gateway (\S+) device token \(shown once\): (fgd_\S+)",
                             init.output + added.output))
    assert set(tokens) == {"plant1", "plant2"}

    async def log_in() -> None:
        settings = CloudSettings(db_url=db, broker_port=0, mqtt_client_id="cli-acl-test")
        started = create_app(settings)
        async with running(started):
            port = started.state.broker_port
            for name, token in tokens.items():
                async with aiomqtt.Client("127.0.0.1", port, username=name, password=token):
                    pass
            assert await refusal(port, username="plant1", password=tokens["plant2"]) == 134

    asyncio.run(log_in())
