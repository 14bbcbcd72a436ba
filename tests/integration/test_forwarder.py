"""Buffer → forwarder → MQTT uplink → broker, against the embedded broker on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from adapters.base import Quality, Reading
from cloud import contract
from cloud.broker import EmbeddedBroker
from gateway.buffer import Buffer, BufferConfig
from gateway.config import MqttUplinkConfig
from gateway.forwarder import Forwarder
from gateway.uplink.mqtt import MqttUplink

pytestmark = pytest.mark.integration
GATEWAY = "gw-fwd"


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker("127.0.0.1", 0) as running:
        yield running


async def test_backlog_is_delivered_once_in_order_with_a_window(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    total = 20_000
    received: list[int] = []
    done = asyncio.Event()
    login = broker.internal  # no device authority here: the full-rights credential
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="sink",
        username=login.username, password=login.password,
    ) as sink:
        await sink.subscribe(contract.topic(GATEWAY, contract.TELEMETRY), qos=1)

        async def collect() -> None:
            async for message in sink.messages:
                batch = contract.decode_batch(message.payload)  # type: ignore[arg-type]
                received.extend(batch.sequence_numbers())
                if len(received) >= total:
                    done.set()

        collector = asyncio.create_task(collect(), name="collect")
        async with Buffer(BufferConfig(path=tmp_path / "b.db")) as buffer:
            for start in range(0, total, 1000):
                buffer.submit([
                    Reading("plc1", f"t{i % 50}", 1_700_000_000_000 + i, float(i),
                            Quality.GOOD if i % 7 else Quality.BAD, None if i % 7 else "x")
                    for i in range(start, start + 1000)
                ])
            await buffer.flush()
            config = MqttUplinkConfig(
                url=f"mqtt://127.0.0.1:{broker.port}",
                username=login.username, password=login.password,
            )

            async def status() -> contract.GatewayStatus:
                return contract.GatewayStatus(state="online", ts=0)

            async with MqttUplink(config, GATEWAY, status) as uplink:
                forwarder = Forwarder(buffer, uplink, window=8, max_points=500)
                task = asyncio.create_task(forwarder.run(), name="forwarder")
                try:
                    await asyncio.wait_for(done.wait(), 20)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)

    first = received[0]
    assert received == list(range(first, first + total))  # complete, once, oldest first
    assert forwarder.stats.max_inflight > 1  # a window, not stop-and-wait
