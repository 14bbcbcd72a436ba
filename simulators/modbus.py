"""The plant over Modbus TCP, served by pymodbus 3.16's simulator data model.

Register map (:data:`PLANT_MAP`; ``adapters/modbus/sample.yaml`` mirrors it). Addresses are
0-based protocol addresses; the engineering value is ``raw * scale``.

=================  =======  =======  =======  =====  =====  ====================
name               table    address  type     scale  order  unit
=================  =======  =======  =======  =====  =====  ====================
motor1.setpoint    holding  0        uint16   1      ABCD   rpm (writable 0..3000)
motor2.setpoint    holding  1        uint16   1      ABCD   rpm (writable 0..3000)
motor1.speed       input    0        float32  1      ABCD   rpm
motor2.speed       input    2        float32  1      ABCD   rpm
motor1.current     input    4        uint16   0.01   ABCD   A
motor2.current     input    5        uint16   0.01   ABCD   A
tank.level         input    6        uint16   0.1    ABCD   %
tank.temperature   input    7        int16    0.1    ABCD   degC
tank.pressure      input    8        float32  1      CDAB   bar (word-swapped)
production.count   input    10       uint32   1      ABCD
line.state         input    12       uint16   1      ABCD   0 stopped/1 running/2 fault
bench.NNNNN        holding  1000+2i  float32  1      ABCD   (``extra`` signals, read-only)
=================  =======  =======  =======  =====  =====  ====================

Every other address is undefined and answered with exception 2 (illegal data address);
writing a setpoint outside 0..3000 gives exception 3, writing anything else exception 2.
The simulator answers unit id ``unit`` only (``unit=0`` answers every id); other ids get
exception 4.

Values are refreshed from the plant inside the request, and only for the registers the
request touches, so a bench of 10 000 signals costs a read of 62 of them per request.

The simulator encodes registers with its own few ``struct`` calls rather than the adapter's
codec, so that a codec bug cannot cancel itself out in the integration tests.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.plant import SETPOINT_MAX, Plant

__all__ = [
    "BENCH_BASE",
    "BENCH_MAX",
    "PLANT_MAP",
    "MapEntry",
    "ModbusSimulator",
    "bench_map",
    "serve",
]


@dataclass(frozen=True, slots=True)
class MapEntry:
    """Where one plant signal lives in the register map."""

    name: str
    table: Literal["holding", "input"]
    address: int
    type: Literal["int16", "uint16", "int32", "uint32", "float32"]
    scale: float = 1.0
    unit: str | None = None
    order: Literal["ABCD", "CDAB"] = "ABCD"
    writable: bool = False

    @property
    def registers(self) -> int:
        return 1 if self.type in ("int16", "uint16") else 2


PLANT_MAP: tuple[MapEntry, ...] = (
    MapEntry("motor1.setpoint", "holding", 0, "uint16", unit="rpm", writable=True),
    MapEntry("motor2.setpoint", "holding", 1, "uint16", unit="rpm", writable=True),
    MapEntry("motor1.speed", "input", 0, "float32", unit="rpm"),
    MapEntry("motor2.speed", "input", 2, "float32", unit="rpm"),
    MapEntry("motor1.current", "input", 4, "uint16", 0.01, "A"),
    MapEntry("motor2.current", "input", 5, "uint16", 0.01, "A"),
    MapEntry("tank.level", "input", 6, "uint16", 0.1, "%"),
    MapEntry("tank.temperature", "input", 7, "int16", 0.1, "degC"),
    MapEntry("tank.pressure", "input", 8, "float32", unit="bar", order="CDAB"),
    MapEntry("production.count", "input", 10, "uint32"),
    MapEntry("line.state", "input", 12, "uint16"),
)
"""The plant's register map (see the module docstring for the table)."""

BENCH_BASE = 1000
"""Holding address of bench signal 0; signal ``i`` is the float32 at ``BENCH_BASE + 2·i``."""
BENCH_MAX = (65536 - BENCH_BASE) // 2
"""The most bench signals that fit the address space."""

_INPUT_SIZE = 13
_HOLDING_SIZE = 2
_FORMATS = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_LIMITS = {
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
}


def bench_map(count: int) -> list[MapEntry]:
    """Map entries of the first ``count`` bench signals, named ``bench.00000`` upwards."""
    if not 0 <= count <= BENCH_MAX:
        raise ValueError(f"count must be 0..{BENCH_MAX}, got {count}")
    return [
        MapEntry(f"bench.{i:05d}", "holding", BENCH_BASE + 2 * i, "float32") for i in range(count)
    ]


def _registers(entry: MapEntry, value: float) -> tuple[int, ...]:
    """Raw registers of one value, saturating at the type's range like a real PLC would."""
    raw: float = value / entry.scale
    if entry.type != "float32":
        lo, hi = _LIMITS[entry.type]
        raw = min(hi, max(lo, round(raw)))
    regs: tuple[int, ...] = struct.unpack(
        f">{entry.registers}H", struct.pack(">" + _FORMATS[entry.type], raw)
    )
    return regs[::-1] if entry.order == "CDAB" else regs


class ModbusSimulator:
    """The plant served over Modbus TCP.

    ``async with ModbusSimulator(plant, port=0) as sim:`` listens on ``host`` and an
    ephemeral port (:attr:`port` gives it) until the block exits; exiting closes the
    listener and every client connection and leaves no task behind.
    """

    def __init__(
        self,
        plant: Plant | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit: int = 1,
    ) -> None:
        if not 0 <= unit <= 255:
            raise ValueError(f"unit must be 0..255, got {unit}")
        self.plant = plant if plant is not None else Plant()
        if self.plant.extra_signals > BENCH_MAX:
            raise ValueError(f"at most {BENCH_MAX} bench signals fit the register map")
        self.host = host
        self.unit = unit
        self._requested_port = port
        self._port: int | None = None
        self._server: ModbusTcpServer | None = None
        self.requests = 0
        """Requests that reached the plant so far (pymodbus refuses undefined and read-only
        addresses before that, so those are not counted)."""
        self._inputs = [e for e in PLANT_MAP if e.table == "input"]
        self._setpoints = [e for e in PLANT_MAP if e.table == "holding"]
        self._bench_end = BENCH_BASE + 2 * self.plant.extra_signals

    @property
    def port(self) -> int:
        """The bound TCP port (the ephemeral one when built with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` it listens on."""
        return f"{self.host}:{self.port}"

    def _device(self) -> SimDevice:
        holding = [SimData(0, count=_HOLDING_SIZE, datatype=DataType.REGISTERS)]
        if self.plant.extra_signals:
            holding.append(
                SimData(
                    BENCH_BASE,
                    count=2 * self.plant.extra_signals,
                    datatype=DataType.REGISTERS,
                    readonly=True,
                )
            )
        # pymodbus needs at least one block per table in the non-shared layout (separate
        # holding and input tables, as on most devices); 16 unused coils/inputs satisfy it.
        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS, readonly=True)]
        inputs = [SimData(0, count=_INPUT_SIZE, datatype=DataType.REGISTERS, readonly=True)]
        return SimDevice(
            id=self.unit, simdata=(bits, list(bits), holding, inputs), action=self._on_access
        )

    async def start(self) -> None:
        """Bind and serve in the background. Raises :class:`OSError` when the address
        cannot be bound; :class:`RuntimeError` if already running."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        server = ModbusTcpServer(self._device(), address=(self.host, self._requested_port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logs the OSError and reports this instead
            raise OSError(f"cannot listen on {self.host}:{self._requested_port}") from exc
        listener = server.transport
        sockets = getattr(listener, "sockets", None)
        if not sockets:
            await server.shutdown()
            raise OSError(f"cannot find the socket bound for {self.host}:{self._requested_port}")
        self._port = int(sockets[0].getsockname()[1])
        self._server = server

    async def stop(self) -> None:
        """Close the listener and all client connections. Idempotent."""
        server, self._server = self._server, None
        self._port = None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()
        if isinstance(listener, asyncio.Server):
            await listener.wait_closed()
        if ModbusBaseServer.active_server is server:
            # pymodbus keeps the last server in a class attribute; don't pin our plant.
            ModbusBaseServer.active_server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- register access ----------------------------------------------------------------

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this for every request, before it answers from ``registers``
        (the whole table, starting at ``start_address``), which we refresh in place."""
        self.requests += 1
        if function_code == 4:
            self._refresh_inputs(start_address, registers)
            return None
        end = address + count
        if set_values is not None:
            return self._write_setpoints(address, [int(v) for v in set_values])
        if address < _HOLDING_SIZE:
            for entry in self._setpoints:
                value = self.plant.setpoint(entry.name)
                registers[entry.address - start_address] = _registers(entry, value)[0]
        if end > BENCH_BASE and address < self._bench_end:
            self._refresh_bench(start_address, registers, max(address, BENCH_BASE), end)
        return None

    def _refresh_inputs(self, start_address: int, registers: list[int]) -> None:
        values = self.plant.sample()
        for entry in self._inputs:
            at = entry.address - start_address
            registers[at : at + entry.registers] = _registers(entry, values[entry.name])

    def _refresh_bench(self, start_address: int, registers: list[int], lo: int, hi: int) -> None:
        first = (lo - BENCH_BASE) // 2
        last = min((hi - 1 - BENCH_BASE) // 2, self.plant.extra_signals - 1)
        n = last - first + 1
        values = self.plant.extra(first, n)
        at = BENCH_BASE + 2 * first - start_address
        registers[at : at + 2 * n] = struct.unpack(f">{2 * n}H", struct.pack(f">{n}f", *values))

    def _write_setpoints(self, address: int, values: list[int]) -> ExcCodes | None:
        if address + len(values) > _HOLDING_SIZE:
            return ExcCodes.ILLEGAL_ADDRESS
        if any(not 0 <= v <= SETPOINT_MAX for v in values):
            return ExcCodes.ILLEGAL_VALUE
        for offset, value in enumerate(values):
            self.plant.set_setpoint(self._setpoints[address + offset].name, value)
        return None


async def serve(
    host: str = "127.0.0.1",
    port: int = 5020,
    unit: int = 1,
    extra: int = 0,
    *,
    seed: int = 0,
    on_ready: Callable[[ModbusSimulator], None] | None = None,
) -> None:
    """Serve a fresh plant (``extra`` bench signals, ``seed``) until cancelled.

    ``on_ready`` is called once the port is bound (with ``port=0``, read ``sim.port``).
    """
    plant = Plant(seed=seed, extra_signals=extra)
    async with ModbusSimulator(plant, host=host, port=port, unit=unit) as sim:
        if on_ready is not None:
            on_ready(sim)
        await asyncio.Event().wait()
