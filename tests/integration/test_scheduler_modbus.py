"""The scheduler and command router against the real Modbus simulator over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest

from adapters.base import Quality, Reading
from adapters.modbus import plugin
from adapters.modbus.config import ModbusDeviceConfig
from cloud.contract import Command, GatewayEvent
from gateway.commands import CommandRouter
from gateway.scheduler import DeviceRunner, interval_groups
from simulators.modbus import ModbusSimulator
from simulators.plant import Plant

pytestmark = pytest.mark.integration


def device_config(port: int, **extra: object) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": "plc1", "host": "127.0.0.1", "port": port,
        "interval": 0.05, "timeout": 0.5, **extra,
        "tags": [
            {"name": "motor1.setpoint", "table": "holding", "address": 0, "type": "uint16"},
            {"name": "tank.level", "table": "input", "address": 6, "type": "uint16",
             "scale": 0.1},
            {"name": "production.count", "table": "input", "address": 10, "type": "uint32",
             "interval": 0.1},
        ],
    })


class Collector:
    """A reading/event sink that wakes a waiter when a condition becomes true."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.events: list[GatewayEvent] = []
        self._waiters: list[tuple[Callable[[], bool], asyncio.Event]] = []

    def sink(self, readings: Sequence[Reading]) -> None:
        self.readings.extend(readings)
        self._check()

    def on_event(self, event: GatewayEvent) -> None:
        self.events.append(event)
        self._check()

    def _check(self) -> None:
        for condition, event in self._waiters:
            if condition():
                event.set()

    async def until(self, condition: Callable[[], bool], limit: float = 10.0) -> None:
        event = asyncio.Event()
        self._waiters.append((condition, event))
        self._check()
        await asyncio.wait_for(event.wait(), limit)


def make_runner(config: ModbusDeviceConfig, collector: Collector) -> DeviceRunner:
    return DeviceRunner(
        config, plugin.factory(config), collector.sink, collector.on_event,
        backoff_min=0.05, backoff_max=0.2,
    )


def test_tags_are_grouped_by_interval() -> None:
    groups = interval_groups(device_config(1))
    assert [(i, [t.name for t in tags]) for i, tags in groups] == [
        (0.05, ["motor1.setpoint", "tank.level"]), (0.1, ["production.count"]),
    ]


async def test_polls_decode_plant_values() -> None:
    plant = Plant(seed=3)
    plant.set_setpoint("motor1.setpoint", 1234)
    async with ModbusSimulator(plant) as sim:
        collector = Collector()
        runner = make_runner(device_config(sim.port), collector)
        task = asyncio.create_task(runner.run(), name="runner")
        try:
            await collector.until(lambda: len({r.tag for r in collector.readings}) == 3)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    by_tag = {r.tag: r for r in collector.readings}
    assert by_tag["motor1.setpoint"].value == 1234
    assert by_tag["motor1.setpoint"].quality is Quality.GOOD
    assert 0.0 <= by_tag["tank.level"].value <= 100.0  # type: ignore[operator]
    assert isinstance(by_tag["production.count"].value, int)
    assert [e.kind for e in collector.events] == ["device_connected"]


async def test_outage_gives_bad_readings_then_recovers() -> None:
    plant = Plant(seed=4)
    sim = ModbusSimulator(plant)
    await sim.__aenter__()
    port = sim.port
    collector = Collector()
    runner = make_runner(device_config(port), collector)
    task = asyncio.create_task(runner.run(), name="runner")
    try:
        await collector.until(lambda: any(r.quality is Quality.GOOD for r in collector.readings))
        await sim.__aexit__(None, None, None)
        await collector.until(
            lambda: any(e.kind == "device_disconnected" for e in collector.events)
        )
        outage_start = len(collector.readings)
        await collector.until(lambda: len(collector.readings) > outage_start + 6)
        during = collector.readings[outage_start:]
        assert all(r.quality is Quality.BAD and r.value is None for r in during)
        assert all(r.reason for r in during)

        async with ModbusSimulator(plant, port=port):
            recovered_from = len(collector.readings)
            await collector.until(lambda: any(
                r.quality is Quality.GOOD for r in collector.readings[recovered_from:]
            ))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    kinds = [e.kind for e in collector.events]
    assert kinds == ["device_connected", "device_disconnected", "device_connected"]


class _NoUplink:
    """CommandRouter.execute needs no uplink; run() is not used here."""


async def test_commands_write_read_and_refuse() -> None:
    plant = Plant(seed=5)
    async with ModbusSimulator(plant) as sim:
        config = device_config(sim.port)
        collector = Collector()
        runner = make_runner(config, collector)
        router = CommandRouter({"plc1": runner}, _NoUplink())  # type: ignore[arg-type]
        try:
            result = await router.execute(Command(
                id="c1", action="write", device="plc1", tag="motor1.setpoint", value=2100
            ))
            assert result.ok, result.error
            assert result.value == 2100
            assert plant.setpoint("motor1.setpoint") == 2100

            result = await router.execute(Command(
                id="c2", action="read", device="plc1", tag="motor1.setpoint"
            ))
            assert (result.ok, result.value) == (True, 2100)

            refusals = {
                "read_only": Command(
                    id="c3", action="write", device="plc1", tag="tank.level", value=1
                ),
                "unknown_tag": Command(id="c4", action="read", device="plc1", tag="nope"),
                "unknown_device": Command(id="c5", action="read", device="plc9", tag="x"),
                "device_error": Command(
                    id="c6", action="write", device="plc1", tag="motor1.setpoint", value=9000
                ),
                "expired": Command(
                    id="c7", action="read", device="plc1", tag="tank.level", deadline=1
                ),
            }
            for code, command in refusals.items():
                result = await router.execute(command)
                assert (result.ok, result.code) == (False, code), result
                assert result.error
        finally:
            await runner.adapter.close()
