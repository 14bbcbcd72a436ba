"""Tables, types, units, bisection, retries and writes of the Modbus adapter, against a
real pymodbus server over loopback (TCP and RTU framed over TCP).

The server here is a plain pymodbus ``SimDevice`` with writable areas, because the plant
simulator's map has only two writable registers; it is still the real protocol stack on a
real socket. Values are encoded independently with ``struct`` for the comparisons.
"""

from __future__ import annotations

import asyncio
import gc
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.base import Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from adapters.modbus.line import lines
from gateway.errors import ConnectError, DeviceError, ReadOnlyError, WriteError

pytestmark = pytest.mark.integration

HOLDING = 200
"""Holding registers 0..199 are defined and writable; 200..299 are undefined (exception 2);
300..309 are defined again."""

Action = Callable[[int, int, int, int, list[int], Any], Awaitable[ExcCodes | None]]


class DeviceServer:
    """pymodbus server with units ``units``; ``hook`` may delay or refuse requests."""

    def __init__(self, units: tuple[int, ...] = (1,), framer: FramerType = FramerType.SOCKET):
        self.units = units
        self.framer = framer
        self.hook: Action | None = None
        self.requests = 0
        self.port = 0
        self._server: ModbusTcpServer | None = None

    async def _action(
        self, fc: int, start: int, address: int, count: int, regs: list[int], values: Any
    ) -> ExcCodes | None:
        self.requests += 1
        if self.hook is not None:
            return await self.hook(fc, start, address, count, regs, values)
        return None

    def _device(self, unit: int) -> SimDevice:
        coils = [SimData(0, count=64, values=False, datatype=DataType.BITS)]
        inputs_bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        holding = [
            SimData(0, count=HOLDING, values=0, datatype=DataType.REGISTERS),
            SimData(300, count=10, values=7, datatype=DataType.REGISTERS),
        ]
        inputs = [SimData(0, count=50, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(
            id=unit, simdata=(coils, inputs_bits, holding, inputs), action=self._action
        )

    async def __aenter__(self) -> DeviceServer:
        server = ModbusTcpServer(
            [self._device(u) for u in self.units], address=("127.0.0.1", 0), framer=self.framer
        )
        await server.serve_forever(background=True)
        self.port = int(server.transport.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self._server = server
        return self

    async def __aexit__(self, *exc: object) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            if ModbusBaseServer.active_server is server:
                ModbusBaseServer.active_server = None

    async def set_registers(self, unit: int, fc: int, address: int, regs: list[int]) -> None:
        assert self._server is not None
        await self._server.context.async_setValues(unit, fc, address, regs)

    async def get(self, unit: int, fc: int, address: int, count: int) -> list[int]:
        assert self._server is not None
        values = await self._server.context.async_getValues(unit, fc, address, count)
        return list(values)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[DeviceServer]:
    async with DeviceServer(units=(1, 2)) as s:
        yield s


def device(port: int, tags: list[dict[str, Any]], **extra: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": "dev", "host": "127.0.0.1", "port": port,
        "timeout": 1.0, "tags": tags, **extra,
    })


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]]:
    opened: list[ModbusAdapter] = []

    async def make(cfg: ModbusDeviceConfig) -> ModbusAdapter:
        adapter = ModbusAdapter(cfg)
        await adapter.connect()
        opened.append(adapter)
        return adapter

    yield make
    for adapter in opened:
        await adapter.close()
    assert not lines(), "every line is closed when its last device closes"


ORDERS = ["ABCD", "CDAB", "BADC", "DCBA"]
_FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "float32": "f", "float64": "d",
}


def wire_registers(type_name: str, value: float, order: str) -> list[int]:
    """Independent reference encoder: bytes big-endian, then reorder words/bytes."""
    data = struct.pack(">" + _FORMATS[type_name], value)
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]


def extremes(type_name: str) -> list[float]:
    code = _FORMATS[type_name]
    if code in "fd":
        big = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0] if code == "f" else 1.7976931348623157e308
        tiny = struct.unpack(">f", b"\x00\x00\x00\x01")[0] if code == "f" else 5e-324
        return [0.0, -0.0, big, -big, tiny, -tiny, 1.5]
    bits = 8 * struct.calcsize(code)
    if code.isupper():
        return [0, 1, (1 << bits) - 1]
    return [-(1 << (bits - 1)), -1, 0, (1 << (bits - 1)) - 1]


@pytest.mark.parametrize("type_name", list(_FORMATS))
async def test_every_type_and_order_round_trips_through_the_server(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]],
    type_name: str,
) -> None:
    """Write each extreme with the adapter, check the server's registers against the
    reference encoding, read it back through a block read."""
    width = struct.calcsize(_FORMATS[type_name]) // 2
    tags = [
        {"name": f"v.{order}", "table": "holding", "address": 10 * i, "type": type_name,
         "order": order}
        for i, order in enumerate(ORDERS)
    ]
    adapter = await connect(device(server.port, tags, max_gap=10))
    assert len(adapter.plan_for(adapter.config.tags)) == 1
    for value in extremes(type_name):
        for i, (tag, order) in enumerate(zip(adapter.config.tags, ORDERS, strict=True)):
            held = await adapter.write(tag, value)
            assert held == value
            assert await server.get(1, 3, 10 * i, width) == wire_registers(type_name, value, order)
        readings = await adapter.read(tuple(adapter.config.tags))
        assert [r.value for r in readings] == [value] * 4
        assert all(type(r.value) is type(value) for r in readings)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
async def test_random_values_round_trip_through_the_server(
    server: DeviceServer, data: st.DataObject
) -> None:
    type_name = data.draw(st.sampled_from(list(_FORMATS)))
    order = data.draw(st.sampled_from(ORDERS))
    code = _FORMATS[type_name]
    if code in "fd":
        value: float = data.draw(st.floats(
            width=32 if code == "f" else 64, allow_nan=False, allow_infinity=False
        ))
    else:
        bits = 8 * struct.calcsize(code)
        lo, hi = (0, (1 << bits) - 1) if code.isupper() else (
            -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        )
        value = data.draw(st.integers(lo, hi))
    regs = wire_registers(type_name, value, order)
    await server.set_registers(1, 3, 20, regs)
    tag = {"name": "v", "table": "holding", "address": 20, "type": type_name, "order": order}
    adapter = ModbusAdapter(device(server.port, [tag]))
    await adapter.connect()
    try:
        (reading,) = await adapter.read(tuple(adapter.config.tags))
        assert reading.quality is Quality.GOOD
        assert reading.value == value
        await adapter.write(adapter.config.tags[0], value)
        assert await server.get(1, 3, 20, len(regs)) == regs
    finally:
        await adapter.close()


async def test_coils_discrete_inputs_bits_strings_and_enums(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    tags = [
        {"name": "motor.run", "table": "coils", "address": 3},
        {"name": "pump.run", "table": "coils", "address": 40, "enum": {0: "off", 1: "on"}},
        {"name": "door.open", "table": "discrete_inputs", "address": 2},
        {"name": "status.ready", "table": "holding", "address": 50, "type": "bool", "bit": 3},
        {"name": "status.alarm", "table": "holding", "address": 50, "type": "bool", "bit": 15},
        {"name": "serial", "table": "holding", "address": 60, "type": "string", "length": 7},
        {"name": "model", "table": "holding", "address": 70, "type": "string", "length": 4,
         "byte_order": "little"},
        {"name": "mode", "table": "holding", "address": 80, "type": "uint16",
         "enum": {0: "manual", 1: "auto", 2: "remote"}},
    ]
    adapter = await connect(device(server.port, tags))
    t = {tag.name: tag for tag in adapter.config.tags}
    group = tuple(adapter.config.tags)
    assert await adapter.write(t["motor.run"], True) is True
    assert await adapter.write(t["pump.run"], "on") == "on"
    assert await adapter.write(t["status.alarm"], True) is True
    assert await adapter.write(t["status.ready"], 1) is True
    assert await adapter.write(t["status.ready"], False) is False
    assert await adapter.write(t["serial"], "SN-0042") == "SN-0042"
    assert await adapter.write(t["model"], "AB") == "AB"
    assert await adapter.write(t["mode"], "remote") == "remote"
    assert await server.get(1, 1, 3, 1) == [True]
    assert await server.get(1, 3, 50, 1) == [0x8000]
    assert await server.get(1, 3, 60, 4) == [0x534E, 0x2D30, 0x3034, 0x3200]
    assert await server.get(1, 3, 70, 2) == [0x4241, 0]
    await server.set_registers(1, 2, 2, [True])
    values = {r.tag: r.value for r in await adapter.read(group)}
    assert values == {
        "motor.run": True, "pump.run": "on", "door.open": True, "status.ready": False,
        "status.alarm": True, "serial": "SN-0042", "model": "AB", "mode": "remote",
    }
    await server.set_registers(1, 3, 80, [9])
    (mode,) = [r for r in await adapter.read(group) if r.tag == "mode"]
    assert (mode.value, mode.quality, mode.reason) == (
        9, Quality.UNCERTAIN, "raw value 9 has no label in the enum"
    )
    with pytest.raises(WriteError, match=r"no label 'fast' \(labels: 'manual', 'auto'"):
        await adapter.write(t["mode"], "fast")
    with pytest.raises(WriteError, match="at most 7"):
        await adapter.write(t["serial"], "12345678")
    with pytest.raises(WriteError, match="needs true/false"):
        await adapter.write(t["motor.run"], 2)
    with pytest.raises(ReadOnlyError, match="discrete input table, which is read-only"):
        await adapter.write(t["door.open"], True)


async def test_several_units_behind_one_connection(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    await server.set_registers(1, 3, 0, [11])
    await server.set_registers(2, 3, 0, [22])
    tags = [
        {"name": "a", "table": "holding", "address": 0, "type": "uint16"},
        {"name": "b", "table": "holding", "address": 0, "type": "uint16", "unit_id": 2},
        {"name": "c", "table": "holding", "address": 0, "type": "uint16", "unit_id": 9},
    ]
    adapter = await connect(device(server.port, tags))
    readings = await adapter.read(tuple(adapter.config.tags))
    assert [r.value for r in readings] == [11, 22, None]
    assert readings[2].reason == "modbus exception 4 (server device failure)"
    assert await adapter.write(adapter.config.tags[1], 33) == 33
    assert await server.get(2, 3, 0, 1) == [33] and await server.get(1, 3, 0, 1) == [11]


async def test_illegal_address_inside_a_block_is_isolated_and_retried_later(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    """Holding 200..299 is undefined: a read-through block 190..309 answers exception 2.
    Bisection isolates the two bad tags; the others stay good, and the next polls use the
    split plan (no bisection again) until ``bad_address_retry`` has passed."""
    good = [{"name": f"g{a}", "table": "holding", "address": a, "type": "uint16"}
            for a in (190, 195, 199, 300, 305, 309)]
    bad = [{"name": "bad250", "table": "holding", "address": 250, "type": "uint16"},
           {"name": "bad201", "table": "holding", "address": 201, "type": "int32"}]
    cfg = device(server.port, [*good[:3], *bad, *good[3:]], max_gap=60, bad_address_retry=0.3)
    adapter = await connect(cfg)
    group = tuple(adapter.config.tags)
    assert len(adapter.plan_for(group)) == 1  # 190..309 in one request
    readings = {r.tag: r for r in await adapter.read(group)}
    assert {n for n, r in readings.items() if r.quality is Quality.GOOD} == {
        g["name"] for g in good
    }
    for name in ("bad250", "bad201"):
        assert readings[name].reason == "modbus exception 2 (illegal data address)"
    split = adapter.plan_for(group)
    assert sum(1 for b in split if b.isolated) == 2
    before = adapter.requests
    readings = {r.tag: r for r in await adapter.read(group)}
    live = sum(1 for b in split if not b.isolated)
    assert adapter.requests - before == live  # no request for the isolated tags
    assert readings["bad250"].quality is Quality.BAD
    assert "isolated, tried again within 0.3s" in str(readings["bad250"].reason)
    assert all(readings[g["name"]].quality is Quality.GOOD for g in good)
    await asyncio.sleep(0.35)  # let bad_address_retry expire (it is a wall-clock rule)
    before = adapter.requests
    await adapter.read(group)
    assert adapter.requests - before > live  # the whole block was tried again, then split


async def test_exceptions_other_than_2_mark_the_block_bad(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    async def busy(fc: int, *_: Any) -> ExcCodes | None:
        return ExcCodes.DEVICE_BUSY if fc == 4 else None

    server.hook = busy
    tags = [{"name": "i", "table": "input", "address": 0, "type": "uint16"},
            {"name": "h", "table": "holding", "address": 0, "type": "uint16"}]
    adapter = await connect(device(server.port, tags))
    readings = await adapter.read(tuple(adapter.config.tags))
    assert readings[0].reason == "modbus exception 6 (server device busy)"
    assert readings[1].quality is Quality.GOOD
    server.hook = None
    with pytest.raises(DeviceError, match="exception 2") as info:
        await adapter.write(
            ModbusDeviceConfig.model_validate(
                {"type": "modbus", "name": "x", "host": "h", "tags": [
                    {"name": "gap", "table": "holding", "address": 250, "type": "uint16"}]}
            ).tags[0],
            1,
        )
    assert info.value.code == 2


async def test_a_late_answer_is_retried_within_the_request_layer(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    """The first answer comes after request_timeout; the retry gets a good answer."""
    slow_once, late_sent = asyncio.Event(), asyncio.Event()

    async def late_first(*_: Any) -> ExcCodes | None:
        if not slow_once.is_set():
            slow_once.set()
            await asyncio.sleep(0.3)  # the device being slow, not test synchronisation
            late_sent.set()
        return None

    await server.set_registers(1, 3, 5, [77])
    server.hook = late_first
    tags = [{"name": "v", "table": "holding", "address": 5, "type": "uint16"}]
    adapter = await connect(device(server.port, tags, request_timeout=0.1, retries=2))
    (reading,) = await adapter.read(tuple(adapter.config.tags))
    assert (reading.value, reading.quality) == (77, Quality.GOOD)
    assert 2 <= adapter.requests <= 3
    assert adapter.connected
    await late_sent.wait()  # the late answer reaches a client that moved on
    (reading,) = await adapter.read(tuple(adapter.config.tags))
    assert (reading.value, reading.quality) == (77, Quality.GOOD)


async def test_retries_are_bounded_and_a_silent_unit_only_fails_its_tags(
    server: DeviceServer, connect: Callable[[ModbusDeviceConfig], Awaitable[ModbusAdapter]]
) -> None:
    """A unit that never answers (here: its answers are held back) costs retries + 1
    attempts, then only its own tags are bad; the session stays up."""
    release = asyncio.Event()

    async def slow_for_address_9(fc: int, start: int, address: int, *_: Any) -> ExcCodes | None:
        if address == 9:
            await release.wait()
        return None

    server.hook = slow_for_address_9
    tags = [{"name": "ok", "table": "input", "address": 0, "type": "uint16"},
            {"name": "hung", "table": "holding", "address": 9, "type": "uint16", "unit_id": 2}]
    adapter = await connect(device(server.port, tags, request_timeout=0.05, retries=2))
    readings = await adapter.read(tuple(adapter.config.tags))
    assert readings[0].quality is Quality.GOOD
    assert readings[1].reason == "timeout: unit 2 did not answer within 0.05s (3 attempts)"
    assert adapter.requests == 1 + 3
    release.set()


async def test_a_device_down_for_long_does_not_grow_tasks_or_memory(free_port: int) -> None:
    """Hundreds of failed connects and reads leave no task or line behind."""
    cfg = device(free_port, [{"name": "v", "table": "holding", "address": 0, "type": "uint16"}],
                 timeout=0.2)
    adapter = ModbusAdapter(cfg)
    baseline = len(asyncio.all_tasks())
    for _ in range(200):
        with pytest.raises(ConnectError):
            await adapter.connect()
        with pytest.raises(ConnectError, match="not connected"):
            await adapter.read(tuple(cfg.tags))
        await adapter.close()
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == baseline
    assert not lines()
    gc.collect()


async def test_rtu_framing_over_tcp() -> None:
    async with DeviceServer(units=(3,), framer=FramerType.RTU) as rtu:
        await rtu.set_registers(3, 4, 0, [0x4049, 0x0FDB])
        tags = [{"name": "pi", "table": "input", "address": 0, "type": "float32"},
                {"name": "c", "table": "coils", "address": 1}]
        cfg = device(rtu.port, tags, transport="rtu-over-tcp", unit=3)
        adapter = ModbusAdapter(cfg)
        await adapter.connect()
        try:
            assert await adapter.write(cfg.tags[1], True) is True
            readings = await adapter.read(tuple(cfg.tags))
            assert readings[0].value == pytest.approx(3.14159274)
            assert readings[1].value is True
        finally:
            await adapter.close()


async def test_devices_on_one_rtu_over_tcp_converter_share_one_connection() -> None:
    async with DeviceServer(units=(1, 2), framer=FramerType.RTU) as rtu:
        await rtu.set_registers(1, 3, 0, [1])
        await rtu.set_registers(2, 3, 0, [2])
        tag = [{"name": "v", "table": "holding", "address": 0, "type": "uint16"}]
        a = ModbusAdapter(device(rtu.port, tag, transport="rtu-over-tcp", unit=1))
        b = ModbusAdapter(
            device(rtu.port, tag, transport="rtu-over-tcp", unit=2, inter_frame_delay="5ms")
        )
        await a.connect()
        await b.connect()
        try:
            assert len(lines()) == 1
            results = await asyncio.gather(
                *(x.read(tuple(x.config.tags)) for x in (a, b, a, b, a, b))
            )
            assert [r[0].value for r in results] == [1, 2, 1, 2, 1, 2]
            await a.close()
            assert b.connected  # the line stays open for the other device
            assert (await b.read(tuple(b.config.tags)))[0].value == 2
        finally:
            await a.close()
            await b.close()
        assert not lines()
