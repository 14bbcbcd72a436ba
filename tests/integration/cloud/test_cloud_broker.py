"""The embedded broker: ephemeral port, retained messages only to their subscribers."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from cloud.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


async def test_ephemeral_port_and_retained_messages_stay_with_subscribers() -> None:
    async with EmbeddedBroker("127.0.0.1", 0) as broker:
        assert broker.port > 0
        # without a device authority only the internal credential logs in
        login = {"username": broker.internal.username, "password": broker.internal.password}
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier="cloud", **login) as cloud:
            await cloud.subscribe("fg/v1/+/status", qos=1)
            async with aiomqtt.Client("127.0.0.1", broker.port, **login) as gw1:
                await gw1.publish("fg/v1/gw1/status", b"gw1-online", qos=1, retain=True)
            async with asyncio.timeout(5):
                async for message in cloud.messages:
                    assert message.payload == b"gw1-online"
                    break
            # a second gateway subscribes only to its own commands: it must not get gw1's
            # retained status (amqtt 0.12.1 replays all retained messages on CONNECT)
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, identifier="gw2", **login
            ) as gw2:
                await gw2.subscribe("fg/v1/gw2/cmd/+", qos=1)
                await gw2.publish("fg/v1/gw2/cmd/r1", b"cmd", qos=1)
                async with asyncio.timeout(5):
                    async for message in gw2.messages:
                        got = (message.topic.value, message.payload)
                        assert got == ("fg/v1/gw2/cmd/r1", b"cmd")
                        break
            # a subscriber of the filter still receives the retained message
            async with aiomqtt.Client("127.0.0.1", broker.port, **login) as late:
                await late.subscribe("fg/v1/+/status", qos=1)
                async with asyncio.timeout(5):
                    async for message in late.messages:
                        assert message.payload == b"gw1-online" and message.retain
                        break


async def test_port_in_use_fails_cleanly() -> None:
    async with EmbeddedBroker("127.0.0.1", 0) as first:
        with pytest.raises(Exception, match="can't be started"):
            async with EmbeddedBroker("127.0.0.1", first.port):
                pass
