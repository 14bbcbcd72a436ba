"""The Modbus adapter against the plant simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.base import Adapter, Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from gateway.errors import ConnectError, DeviceError, WriteError
from simulators.modbus import BENCH_BASE, PLANT_MAP, ModbusSimulator, bench_map
from simulators.plant import ManualClock, Plant

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[ModbusSimulator]:
    plant = Plant(seed=42, extra_signals=1000, clock=clock)
    clock.t = 12.5  # motors half-way up their ramps, counter running
    async with ModbusSimulator(plant, port=0) as simulator:
        yield simulator


def plant_tags() -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "table": e.table,
            "address": e.address,
            "type": e.type,
            "scale": e.scale,
            "order": e.order,
            "unit": e.unit,
        }
        for e in PLANT_MAP
    ]


def config(
    port: int, tags: list[dict[str, Any]] | None = None, **overrides: Any
) -> ModbusDeviceConfig:
    data: dict[str, Any] = {
        "type": "modbus",
        "name": "line1-plc",
        "host": "127.0.0.1",
        "port": port,
        "timeout": 2.0,
        "tags": plant_tags() if tags is None else tags,
    }
    data.update(overrides)
    return ModbusDeviceConfig.model_validate(data)


@pytest.fixture
async def adapter(sim: ModbusSimulator) -> AsyncIterator[ModbusAdapter]:
    a = ModbusAdapter(config(sim.port))
    await a.connect()
    yield a
    await a.close()


def expected(entry_type: str, scale: float, value: float) -> float:
    """What the simulator publishes for ``value``: float32 rounding or a scaled integer."""
    if entry_type == "float32":
        return float(struct.unpack(">f", struct.pack(">f", value))[0])
    return round(value / scale) * scale


async def test_values_decode_as_the_register_map_says(
    adapter: ModbusAdapter, sim: ModbusSimulator
) -> None:
    assert isinstance(adapter, Adapter)
    tags = tuple(adapter.config.tags)
    readings = await adapter.read(tags)
    truth = sim.plant.sample()
    assert [r.tag for r in readings] == [t.name for t in tags]
    for reading, entry in zip(readings, PLANT_MAP, strict=True):
        assert reading.device == "line1-plc"
        assert reading.quality is Quality.GOOD and reading.reason is None
        assert reading.value == pytest.approx(expected(entry.type, entry.scale, truth[entry.name]))
    by_name: dict[str, Any] = {r.tag: r.value for r in readings}
    assert by_name["line.state"] == 1 and type(by_name["line.state"]) is int
    assert type(by_name["production.count"]) is int and by_name["production.count"] > 0
    assert 0 < by_name["motor1.speed"] < by_name["motor1.setpoint"] == 1450
    # word-swapped float decoded right, not garbage
    assert 1.5 < by_name["tank.pressure"] < 2.0


async def test_one_timestamp_per_block(adapter: ModbusAdapter) -> None:
    readings = await adapter.read(tuple(adapter.config.tags))
    holding = {r.ts for r in readings[:2]}
    inputs = {r.ts for r in readings[2:]}
    assert len(holding) == 1 and len(inputs) == 1


async def test_write_a_setpoint_and_read_it_back(
    adapter: ModbusAdapter, sim: ModbusSimulator, clock: ManualClock
) -> None:
    setpoint = adapter.config.tags[0]
    assert await adapter.write(setpoint, 1234.4) == 1234
    assert sim.plant.setpoint("motor1.setpoint") == 1234
    clock.t += 60  # let motor 1 settle
    readings = await adapter.read(tuple(adapter.config.tags))
    by_name = {r.tag: r.value for r in readings}
    assert by_name["motor1.setpoint"] == 1234
    assert by_name["motor1.speed"] == pytest.approx(1234, rel=0.01)


async def test_write_errors(adapter: ModbusAdapter) -> None:
    setpoint, speed = adapter.config.tags[0], adapter.config.tags[2]
    read_only = "'motor1.speed' is in the input register table, which is read-only"
    with pytest.raises(WriteError, match=re.escape(read_only)):
        await adapter.write(speed, 10.0)
    with pytest.raises(WriteError, match="out of range for uint16"):
        await adapter.write(setpoint, 70_000)
    with pytest.raises(DeviceError, match=r"modbus exception 3 \(illegal data value\)") as info:
        await adapter.write(setpoint, 3001)  # fits a uint16, but the device refuses it
    assert info.value.code == 3
    assert adapter.connected  # a refusal keeps the session


async def test_float32_write_uses_two_registers(sim: ModbusSimulator) -> None:
    """Writing a float32 goes through function code 16; the bench area is read-only, so the
    device answers exception 2 — which proves the request reached it as one write."""
    bench0 = {"name": "b0", "table": "holding", "address": BENCH_BASE, "type": "float32"}
    cfg = config(sim.port, [bench0])
    adapter = ModbusAdapter(cfg)
    await adapter.connect()
    try:
        with pytest.raises(DeviceError, match="modbus exception 2") as info:
            await adapter.write(cfg.tags[0], 1.5)
        assert info.value.code == 2
    finally:
        await adapter.close()


async def test_refused_block_is_bad_while_others_stay_good(sim: ModbusSimulator) -> None:
    tags = [
        *plant_tags(),
        {"name": "missing1", "table": "holding", "address": 500, "type": "uint16"},
        {"name": "missing2", "table": "holding", "address": 501, "type": "int32"},
    ]
    adapter = ModbusAdapter(config(sim.port, tags))
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(adapter.config.tags))
    finally:
        await adapter.close()
    bad = {r.tag: r for r in readings if r.quality is not Quality.GOOD}
    assert set(bad) == {"missing1", "missing2"}
    for reading in bad.values():
        assert reading.quality is Quality.BAD and reading.value is None
        assert reading.reason == "modbus exception 2 (illegal data address)"
    assert all(r.value is not None for r in readings if r.tag not in bad)
    assert [r.tag for r in readings] == [t["name"] for t in tags]


async def test_wrong_unit_id_is_a_bad_block_not_a_broken_session(sim: ModbusSimulator) -> None:
    adapter = ModbusAdapter(config(sim.port, unit=7))
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(adapter.config.tags))
        assert {r.reason for r in readings} == {"modbus exception 4 (server device failure)"}
        assert adapter.connected
    finally:
        await adapter.close()


async def test_bench_block_is_planned_and_decoded(sim: ModbusSimulator) -> None:
    entries = bench_map(1000)
    tags = [
        {"name": e.name, "table": e.table, "address": e.address, "type": e.type} for e in entries
    ]
    adapter = ModbusAdapter(config(sim.port, tags))
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(adapter.config.tags))
        truth = sim.plant.extra()
        assert [r.value for r in readings] == [pytest.approx(v, rel=1e-6) for v in truth]
        # 1000 contiguous registers: exactly 8 requests of 125 registers
        words = [
            {"name": f"w{i}", "table": "holding", "address": BENCH_BASE + i, "type": "uint16"}
            for i in range(1000)
        ]
        words_adapter = ModbusAdapter(config(sim.port, words))
        await words_adapter.connect()
        before = sim.requests
        readings = await words_adapter.read(tuple(words_adapter.config.tags))
        assert sim.requests - before == 8
        assert all(r.quality is Quality.GOOD for r in readings)
        await words_adapter.close()
    finally:
        await adapter.close()


async def test_plan_is_cached_per_tag_sequence(adapter: ModbusAdapter) -> None:
    group = tuple(adapter.config.tags[:2])
    assert adapter.plan_for(group) is adapter.plan_for(group)
    assert len(adapter.plan_for(group)) == 1
    assert (await adapter.read(group))[0].value == 1450


async def test_connect_and_close_are_idempotent(sim: ModbusSimulator) -> None:
    adapter = ModbusAdapter(config(sim.port))
    await adapter.close()
    await adapter.connect()
    await adapter.connect()
    assert adapter.connected
    await adapter.close()
    await adapter.close()
    assert not adapter.connected
    with pytest.raises(ConnectError, match="not connected"):
        await adapter.read(tuple(adapter.config.tags))
    await adapter.connect()  # and it reconnects
    assert len(await adapter.read(tuple(adapter.config.tags))) == len(PLANT_MAP)
    await adapter.close()


async def test_connect_to_a_closed_port(free_port: int) -> None:
    adapter = ModbusAdapter(config(free_port))
    with pytest.raises(ConnectError, match=f"127.0.0.1:{free_port}") as info:
        await adapter.connect()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert not adapter.connected
    await adapter.close()


async def test_reads_after_the_simulator_stops(clock: ManualClock) -> None:
    plant = Plant(clock=clock)
    simulator = ModbusSimulator(plant, port=0)
    await simulator.start()
    port = simulator.port
    adapter = ModbusAdapter(config(port))
    await adapter.connect()
    tags = tuple(adapter.config.tags)
    assert all(r.quality is Quality.GOOD for r in await adapter.read(tags))
    await simulator.stop()
    await simulator.stop()  # idempotent
    loop = asyncio.get_running_loop()
    started = loop.time()
    # Whether the close reached the client before or after the request went out, the read
    # fails at once rather than after the 2 s request timeout.
    with pytest.raises(ConnectError, match=r"connection closed by the device|not connected"):
        await adapter.read(tags)
    assert loop.time() - started < 1.0
    assert not adapter.connected
    with pytest.raises(ConnectError):
        await adapter.connect()
    await adapter.close()


class _Silent(asyncio.Protocol):
    """A peer that accepts connections and never answers (a hung device)."""

    def __init__(self, transports: list[asyncio.BaseTransport]) -> None:
        self.transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transports.append(transport)


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    transports: list[asyncio.BaseTransport] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Silent(transports), "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for transport in transports:
            transport.close()
        await server.wait_closed()


async def test_a_silent_device_raises_connect_error_after_the_timeout(silent_port: int) -> None:
    adapter = ModbusAdapter(config(silent_port, timeout=0.2))
    await adapter.connect()
    loop = asyncio.get_running_loop()
    started = loop.time()
    # timeout 0.2 s and retries 1: two attempts of 0.1 s each
    with pytest.raises(ConnectError, match=r"did not answer within 0\.1s \(2 attempts\)"):
        await adapter.read(tuple(adapter.config.tags))
    assert loop.time() - started < 1.5
    assert not adapter.connected  # dropped, so the runtime reconnects cleanly
    await adapter.close()


async def test_cancelled_read_drops_the_session(silent_port: int) -> None:
    adapter = ModbusAdapter(config(silent_port, timeout=10))
    await adapter.connect()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(adapter.read(tuple(adapter.config.tags)), 0.1)
    assert not adapter.connected
    await adapter.close()



async def test_a_write_may_overlap_a_poll(adapter: ModbusAdapter, sim: ModbusSimulator) -> None:
    tags = tuple(adapter.config.tags)
    readings, held = await asyncio.gather(
        adapter.read(tags), adapter.write(adapter.config.tags[1], 700)
    )
    assert len(readings) == len(tags) and held == 700
    assert sim.plant.setpoint("motor2.setpoint") == 700
