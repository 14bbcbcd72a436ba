"""The plant over Modbus (TCP, RTU over TCP, RTU over a serial line), served by pymodbus 3.16's
simulator data model, with run-time fault injection.

Register map (:data:`PLANT_MAP` and :data:`PLANT_BITS`; ``adapters/modbus/sample.yaml``
mirrors them). Addresses are 0-based protocol addresses; the engineering value is
``raw * scale``.

=================  ===============  =======  =======  =====  =====  ==========================
name               table            address  type     scale  order  unit
=================  ===============  =======  =======  =====  =====  ==========================
motor1.setpoint    holding          0        uint16   1      ABCD   rpm (writable 0..3000)
motor2.setpoint    holding          1        uint16   1      ABCD   rpm (writable 0..3000)
motor1.speed       input            0        float32  1      ABCD   rpm
motor2.speed       input            2        float32  1      ABCD   rpm
motor1.current     input            4        uint16   0.01   ABCD   A
motor2.current     input            5        uint16   0.01   ABCD   A
tank.level         input            6        uint16   0.1    ABCD   %
tank.temperature   input            7        int16    0.1    ABCD   degC
tank.pressure      input            8        float32  1      CDAB   bar (word-swapped)
production.count   input            10       uint32   1      ABCD
line.state         input            12       uint16   1      ABCD   0 stopped/1 running/2 fault
bench.NNNNN        holding          1000+2i  float32  1      ABCD   (``extra`` signals, read-only)
motor1.run         coils            0        bool                   writable; off coasts down
motor2.run         coils            1        bool                   writable; off coasts down
line.running       discrete_inputs  0        bool                   line.state == running
line.fault         discrete_inputs  1        bool                   line.state == fault
tank.high          discrete_inputs  2        bool                   tank.level > 90 %
=================  ===============  =======  =======  =====  =====  ==========================

Every other address is undefined and answered with exception 2 (illegal data address);
writing a setpoint outside 0..3000 gives exception 3, writing anything read-only exception 2.
``register_map=`` replaces this map (and the bench block) with a declarative one, see
:mod:`simulators.modbus_map`.

Unit ids: ``unit`` (default 1) or ``units=[1, 2, 3]``; ``0`` among them answers every id.
With a list, every unit serves its own copy of the map (own registers, own written
constants) backed by the *same* plant, so a setpoint written through unit 2 moves the motor
seen by unit 1; pass ``units={1: plant_a, 2: plant_b}`` for independent plants. Other ids
get exception 4 (``unknown_units="exception"``, the default) or no answer at all
(``"silent"``, like an empty RS-485 address).

Values are refreshed from the plant inside the request, and only for the registers the
request touches, so a bench of 10 000 signals costs a read of 62 of them per request. The
simulator encodes registers with its own ``struct`` calls (:mod:`simulators.modbus_map`)
rather than the adapter's codec, so that a codec bug cannot cancel itself out in tests.

Faults (:class:`simulators.faults.Faults`, ``sim.faults``) are read on every request.
Requests on one connection (or serial line) are served one at a time in arrival order.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.base import ModbusBaseServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from simulators.faults import Faults
from simulators.modbus_map import (
    BIT_TABLES,
    Generator,
    MapEntry,
    Table,
    decode,
    encode,
    load_map,
)
from simulators.plant import Plant

__all__ = [
    "BENCH_BASE",
    "BENCH_MAX",
    "PLANT_BITS",
    "PLANT_MAP",
    "PLANT_TAGS",
    "MapEntry",
    "ModbusSimulator",
    "bench_map",
    "serve",
]

log = logging.getLogger(__name__)

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
"""The plant's registers (see the module docstring for the table)."""

PLANT_BITS: tuple[MapEntry, ...] = (
    MapEntry("motor1.run", "coils", 0, "bool", writable=True),
    MapEntry("motor2.run", "coils", 1, "bool", writable=True),
    MapEntry("line.running", "discrete_inputs", 0, "bool"),
    MapEntry("line.fault", "discrete_inputs", 1, "bool"),
    MapEntry("tank.high", "discrete_inputs", 2, "bool"),
)
"""The plant's coils and discrete inputs (see the module docstring for the table)."""

PLANT_TAGS: tuple[MapEntry, ...] = PLANT_MAP + PLANT_BITS
"""The whole default map: registers, then bits."""

BENCH_BASE = 1000
"""Holding address of bench signal 0; signal ``i`` is the float32 at ``BENCH_BASE + 2·i``."""
BENCH_MAX = (65536 - BENCH_BASE) // 2
"""The most bench signals that fit the address space."""

_FC_TABLE: dict[int, Table] = {
    1: "coils", 5: "coils", 15: "coils", 2: "discrete_inputs", 4: "input",
    3: "holding", 6: "holding", 16: "holding", 22: "holding", 23: "holding",
}
_BIT_WRITES = (5, 15)
_REGISTER_WRITES = (6, 16, 22, 23)
_SERIAL_READY_TIMEOUT = 5.0


def bench_map(count: int) -> list[MapEntry]:
    """Map entries of the first ``count`` bench signals, named ``bench.00000`` upwards."""
    if not 0 <= count <= BENCH_MAX:
        raise ValueError(f"count must be 0..{BENCH_MAX}, got {count}")
    return [
        # The simulator serves the bench block from Plant.extra(); the source is a placeholder.
        MapEntry(f"bench.{i:05d}", "holding", BENCH_BASE + 2 * i, "float32", source="const:0")
        for i in range(count)
    ]


def _spans(pdu: ModbusPDU) -> list[tuple[Table, int, int]]:
    """``(table, first address, count)`` of everything a request touches."""
    fc = pdu.function_code
    table = _FC_TABLE.get(fc)
    if table is None:
        return []
    if fc == 23:
        return [
            (table, pdu.write_address, len(pdu.write_registers)),  # type: ignore[attr-defined]
            (table, pdu.read_address, pdu.read_count),  # type: ignore[attr-defined]
        ]
    if fc in (5, 6, 22):
        return [(table, pdu.address, 1)]
    if fc == 15:
        return [(table, pdu.address, len(pdu.bits))]
    if fc == 16:
        return [(table, pdu.address, len(pdu.registers))]
    return [(table, pdu.address, pdu.count)]


class _UnitModel:
    """The data behind one unit id: its entries, its written constants and the pymodbus
    :class:`SimDevice` whose ``action`` refreshes registers from the plant per request."""

    def __init__(self, unit: int, plant: Plant, entries: Sequence[MapEntry], bench: int) -> None:
        self.unit = unit
        self.plant = plant
        self.bench = bench
        self.bench_end = BENCH_BASE + 2 * bench
        self.generator = Generator(plant)
        self.consts: dict[str, float] = {}
        mine = [e for e in entries if e.unit_id is None or e.unit_id == unit]
        self.tables: dict[str, list[MapEntry]] = {
            t: sorted((e for e in mine if e.table == t), key=lambda e: e.address)
            for t in ("coils", "discrete_inputs", "holding", "input")
        }
        self.starts = {t: [e.address for e in es] for t, es in self.tables.items()}
        self.bits = {t: {e.address: e for e in self.tables[t]} for t in BIT_TABLES}

    def device(self) -> SimDevice:
        """A fresh pymodbus device with this unit's layout (separate tables)."""
        blocks: list[list[SimData]] = []
        for table in ("coils", "discrete_inputs"):
            bits = [
                SimData(e.address, values=False, datatype=DataType.BITS)
                for e in self.tables[table]
            ]
            # pymodbus needs a block per table; refused by check_bits when undefined.
            blocks.append(bits or [SimData(0, count=16, values=False, datatype=DataType.BITS)])
        for table in ("holding", "input"):
            regs = [
                SimData(
                    e.address,
                    count=e.registers,
                    datatype=DataType.REGISTERS,
                    readonly=not e.writable,
                )
                for e in self.tables[table]
            ]
            if table == "holding" and self.bench:
                regs.append(
                    SimData(
                        BENCH_BASE, count=2 * self.bench, datatype=DataType.REGISTERS,
                        readonly=True,
                    )
                )
            blocks.append(regs or [SimData(0, datatype=DataType.INVALID)])
        coils, discrete, holding, inputs = blocks
        return SimDevice(
            id=self.unit, simdata=(coils, discrete, holding, inputs), action=self.action
        )

    def check_bits(self, table: Table, address: int, count: int, write: bool) -> ExcCodes | None:
        """pymodbus validates bits 16 at a time; a real device refuses each undefined one."""
        defined = self.bits[table]
        for a in range(address, address + count):
            entry = defined.get(a)
            if entry is None or (write and not entry.writable):
                return ExcCodes.ILLEGAL_ADDRESS
        return None

    def _overlapping(self, table: str, lo: int, hi: int) -> list[MapEntry]:
        entries, starts = self.tables[table], self.starts[table]
        i = max(bisect.bisect_right(starts, lo) - 1, 0)
        out = []
        while i < len(entries) and entries[i].address < hi:
            if entries[i].end > lo:
                out.append(entries[i])
            i += 1
        return out

    def _sample(self, entries: Iterable[MapEntry]) -> dict[str, float | int] | None:
        """One plant sample per request, and none when no entry reads the plant."""
        if any(e.value_source.kind == "plant" for e in entries):
            return self.plant.sample()
        return None

    def _value(self, entry: MapEntry, sample: dict[str, float | int] | None) -> float:
        # ``sample`` is None only when no entry being refreshed reads the plant.
        return self.generator.value(entry, sample or {}, self.consts)

    # -- the SimDevice action: pymodbus calls it for every access, before it answers from
    # -- ``registers`` (the whole table, starting at ``start_address``) --------------------

    async def action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _FC_TABLE[function_code]
        if table in BIT_TABLES:
            if set_values is not None and function_code in _BIT_WRITES:
                return self._write_bits(address, [bool(v) for v in set_values])
            self._refresh_bits(table, start_address, registers)
            return None
        if set_values is not None and function_code in _REGISTER_WRITES:
            written = [int(v) for v in set_values]
            return self._write_registers(start_address, address, written, registers)
        self._refresh_registers(table, start_address, registers, address, address + count)
        return None

    def _refresh_bits(self, table: str, start_address: int, registers: list[int]) -> None:
        entries = self.tables[table]
        sample = self._sample(entries)
        for entry in entries:
            on = self._value(entry, sample) >= 0.5
            at, bit = entry.address // 16 - start_address, 1 << (entry.address % 16)
            registers[at] = registers[at] | bit if on else registers[at] & ~bit

    def _write_bits(self, address: int, values: list[bool]) -> ExcCodes | None:
        targets = [(self.bits["coils"][address + i], v) for i, v in enumerate(values)]
        for entry, value in targets:  # all or nothing
            if entry.value_source.kind == "plant":
                self.plant.check_write(entry.value_source.signal, float(value))
        for entry, value in targets:
            self._store(entry, float(value))
        return None

    def _refresh_registers(
        self, table: str, start_address: int, registers: list[int], lo: int, hi: int
    ) -> None:
        entries = self._overlapping(table, lo, hi)
        sample = self._sample(entries)
        for entry in entries:
            at = entry.address - start_address
            registers[at : at + entry.registers] = encode(entry, self._value(entry, sample))
        if table == "holding" and hi > BENCH_BASE and lo < self.bench_end:
            self._refresh_bench(start_address, registers, max(lo, BENCH_BASE), hi)

    def _refresh_bench(self, start_address: int, registers: list[int], lo: int, hi: int) -> None:
        first = (lo - BENCH_BASE) // 2
        last = min((hi - 1 - BENCH_BASE) // 2, self.bench - 1)
        n = last - first + 1
        values = self.plant.extra(first, n)
        at = BENCH_BASE + 2 * first - start_address
        registers[at : at + 2 * n] = struct.unpack(f">{2 * n}H", struct.pack(f">{n}f", *values))

    def _write_registers(
        self, start_address: int, address: int, values: list[int], registers: list[int]
    ) -> ExcCodes | None:
        end = address + len(values)
        pending: list[tuple[MapEntry, float]] = []
        for entry in self._overlapping("holding", address, end):
            regs = [
                values[a - address] if address <= a < end else registers[a - start_address]
                for a in range(entry.address, entry.end)
            ]
            value = decode(entry, regs)
            if entry.value_source.kind == "plant":
                try:
                    self.plant.check_write(entry.value_source.signal, value)
                except (KeyError, ValueError):
                    return ExcCodes.ILLEGAL_VALUE
            pending.append((entry, value))
        for entry, value in pending:
            self._store(entry, value)
        return None

    def _store(self, entry: MapEntry, value: float) -> None:
        if entry.value_source.kind == "plant":
            self.plant.write(entry.value_source.signal, value)
        else:
            self.consts[entry.name] = value


class _RequestHandler(ServerRequestHandler):
    """One client connection (or the serial line): hands each decoded request to the
    simulator as its own tracked task, and answers requests in arrival order."""

    def __init__(self, owner: ModbusBaseServer, sim: ModbusSimulator) -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
        self.sim = sim
        self.order = asyncio.Lock()

    def callback_connected(self) -> None:
        super().callback_connected()
        self.sim._connected.set()

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        used: int = super().callback_data(data, addr)
        pdu, self.last_pdu = self.last_pdu, None
        if pdu is not None:
            self.sim._spawn(self._serve(pdu, self.last_addr))
        return used

    def handle_later(self) -> None:
        """pymodbus would answer ``last_pdu`` here; requests start in :meth:`callback_data`."""

    async def _serve(self, pdu: ModbusPDU, addr: tuple[Any, ...] | None) -> None:
        async with self.order:
            response = await self.sim._respond(pdu, self)
            if response is None or not self.transport or self.is_closing:
                return
            response.transaction_id = pdu.transaction_id
            response.dev_id = pdu.dev_id
            self.server_send(response, addr)


class _TcpServer(ModbusTcpServer):
    sim: ModbusSimulator

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.sim)


class _SerialServer(ModbusSerialServer):
    sim: ModbusSimulator

    def callback_new_connection(self) -> _RequestHandler:
        return _RequestHandler(self, self.sim)


class ModbusSimulator:
    """The plant served over Modbus: TCP, RTU framed over TCP, or RTU on a serial line.

    ``async with ModbusSimulator(plant, port=0) as sim:`` listens on ``host`` and an
    ephemeral port (:attr:`port` gives it) until the block exits; exiting closes the
    listener (or serial port) and every client connection and leaves no task behind.

    * ``framer``: ``"socket"`` (Modbus TCP, the default on TCP) or ``"rtu"`` (RTU frames,
      the only choice on a serial line). With ``serial_port`` (a device path such as one
      end of a pty pair, or a pyserial URL) the simulator serves that line with
      ``baudrate``/``bytesize``/``parity``/``stopbits`` instead of listening on TCP;
      this needs pyserial.
    * ``unit``/``units``/``unknown_units``: which unit ids answer (module docstring).
    * ``register_map``: a map file (``.yaml``/``.csv``) or entries replacing the plant map.
    * ``faults``: shared :class:`Faults` (a fresh one by default), read on every request.

    Construction validates and does no I/O; it raises :class:`ValueError` (bad arguments)
    or :class:`simulators.modbus_map.MapError`/:class:`OSError` for a bad map file.
    """

    def __init__(
        self,
        plant: Plant | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unit: int = 1,
        units: Iterable[int] | Mapping[int, Plant] | None = None,
        framer: Literal["socket", "rtu"] | None = None,
        serial_port: str | None = None,
        baudrate: int = 19200,
        bytesize: int = 8,
        parity: Literal["N", "E", "O"] = "N",
        stopbits: int = 1,
        register_map: str | Path | Sequence[MapEntry] | None = None,
        faults: Faults | None = None,
        unknown_units: Literal["exception", "silent"] = "exception",
    ) -> None:
        if isinstance(units, Mapping):
            plants = dict(units)
        else:
            ids = [unit] if units is None else list(units)
            shared = plant if plant is not None else Plant()
            plants = dict.fromkeys(ids, shared)
        if not plants:
            raise ValueError("units must name at least one unit id")
        for uid in plants:
            if not 0 <= uid <= 255:
                raise ValueError(f"unit ids must be 0..255, got {uid}")
        self.plants: dict[int, Plant] = plants
        """The plant behind each unit id."""
        self.plant = plant if plant is not None else next(iter(plants.values()))
        self.unit = next(iter(plants))
        if framer is None:
            framer = "rtu" if serial_port else "socket"
        if framer not in ("socket", "rtu"):
            raise ValueError(f"framer must be 'socket' or 'rtu', got {framer!r}")
        if serial_port and framer != "rtu":
            raise ValueError("a serial line speaks RTU: use framer='rtu' with serial_port")
        if parity not in ("N", "E", "O") or stopbits not in (1, 2) or bytesize not in (7, 8):
            raise ValueError("serial settings: parity N/E/O, stopbits 1/2, bytesize 7/8")
        if unknown_units not in ("exception", "silent"):
            raise ValueError(
                f"unknown_units must be 'exception' or 'silent', got {unknown_units!r}"
            )
        self.framer = framer
        self.serial_port = serial_port
        self.serial_settings = {
            "baudrate": baudrate, "bytesize": bytesize, "parity": parity, "stopbits": stopbits,
        }
        self.unknown_units = unknown_units
        self.host = host
        self._requested_port = port
        if register_map is None:
            entries: Sequence[MapEntry] = PLANT_TAGS
            for p in plants.values():
                if p.extra_signals > BENCH_MAX:
                    raise ValueError(f"at most {BENCH_MAX} bench signals fit the register map")
        elif isinstance(register_map, str | Path):
            entries = load_map(register_map)
        else:
            entries = tuple(register_map)
        self.register_map: tuple[MapEntry, ...] = tuple(entries)
        """The entries served (the plant map by default)."""
        self._models = {
            uid: _UnitModel(uid, p, entries, p.extra_signals if register_map is None else 0)
            for uid, p in plants.items()
        }
        self.faults = faults if faults is not None else Faults()
        self.requests = 0
        """Requests of served unit ids handled so far (answered with data or an exception;
        not those of silent units or dropped)."""
        self._server: _TcpServer | _SerialServer | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._detach: Callable[[], None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the ephemeral one when built with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("the simulator is not listening on TCP")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` it listens on, or the serial port it serves."""
        return self.serial_port if self.serial_port else f"{self.host}:{self.port}"

    @property
    def units(self) -> tuple[int, ...]:
        """The unit ids served."""
        return tuple(self._models)

    @property
    def connections(self) -> int:
        """Open client connections (1 for a serving serial line)."""
        return 0 if self._server is None else len(self._server.active_connections)

    async def start(self) -> None:
        """Bind (or open the serial port) and serve in the background. Raises
        :class:`OSError` when the address or port cannot be used, :class:`RuntimeError` if
        already running or pyserial is missing for a serial line."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        devices = [m.device() for m in self._models.values()]
        server: _TcpServer | _SerialServer
        framer = FramerType.RTU if self.framer == "rtu" else FramerType.SOCKET
        if self.serial_port:
            try:
                import serial  # noqa: F401  (pymodbus needs it; say so before it fails oddly)
            except ImportError as exc:
                raise RuntimeError("serving a serial line needs pyserial (pip install "
                                   "pyserial, or pymodbus[serial])") from exc
            server = _SerialServer(
                devices, framer=framer, port=self.serial_port, reconnect_delay=0,
                **self.serial_settings,  # type: ignore[arg-type]
            )
            where = self.serial_port
        else:
            server = _TcpServer(devices, framer=framer, address=(self.host, self._requested_port))
            where = f"{self.host}:{self._requested_port}"
        server.sim = self
        self._connected.clear()
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:  # pymodbus logs the OSError and reports this instead
            self._forget(server)
            raise OSError(f"cannot serve Modbus on {where}") from exc
        self._server = server
        if self.serial_port:
            try:
                await asyncio.wait_for(self._connected.wait(), _SERIAL_READY_TIMEOUT)
            except TimeoutError:
                await self.stop()
                raise OSError(f"the serial port {where} did not open") from None
        else:
            sockets = getattr(server.transport, "sockets", None)
            if not sockets:
                await self.stop()
                raise OSError(f"cannot find the socket bound for {where}")
            self._port = int(sockets[0].getsockname()[1])
        self._detach = self.faults.attach(self._drop_connections)

    async def stop(self) -> None:
        """Close the listener (or serial port) and all client connections, and end every
        request in progress (a delayed answer is not sent). Idempotent."""
        server, self._server = self._server, None
        self._port = None
        if self._detach is not None:
            self._detach()
            self._detach = None
        if server is None:
            return
        listener = server.transport
        await server.shutdown()
        if isinstance(listener, asyncio.Server):
            # A client that connects while the listener is closing can keep
            # wait_closed() waiting for its connection forever: bound the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener.wait_closed(), 1.0)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._forget(server)

    @staticmethod
    def _forget(server: ModbusBaseServer) -> None:
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

    # -- requests -----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(
            coro, name=f"modbus-sim request {self.address}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("modbus simulator: request failed", exc_info=exc)

    def _drop_connections(self) -> int:
        server = self._server
        if server is None or self.serial_port:
            return 0
        handlers = list(server.active_connections.values())
        for handler in handlers:
            handler.close()
        return len(handlers)

    async def _respond(self, pdu: ModbusPDU, handler: _RequestHandler) -> ModbusPDU | None:
        """The answer to one request, or ``None`` for no answer (silence, dropped)."""
        faults, unit, fc = self.faults, pdu.dev_id, pdu.function_code
        if unit in faults.silent_units:
            return None
        model = self._models.get(unit) or self._models.get(0)
        if model is None:
            if self.unknown_units == "silent":
                return None
            return ExceptionResponse(fc, ExcCodes.DEVICE_FAILURE)
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        if faults.should_drop():
            if not self.serial_port:
                handler.close()
            return None
        self.requests += 1
        for table, address, count in _spans(pdu):
            code = faults.exception_for(table, address, count)
            if code is None and table in BIT_TABLES:
                code = model.check_bits(table, address, count, fc in _BIT_WRITES)
            if code is not None:
                return ExceptionResponse(fc, code)
        try:
            response: ModbusPDU = await pdu.datastore_update(handler.server.context, unit)
        except Exception:  # like pymodbus: a datastore bug is a device failure, not a crash
            log.exception("modbus simulator: cannot answer %s", pdu)
            return ExceptionResponse(fc, ExcCodes.DEVICE_FAILURE)
        return response


async def serve(
    host: str = "127.0.0.1",
    port: int = 5020,
    unit: int = 1,
    extra: int = 0,
    *,
    seed: int = 0,
    on_ready: Callable[[ModbusSimulator], None] | None = None,
    **options: Any,
) -> None:
    """Serve a fresh plant (``extra`` bench signals, ``seed``) until cancelled.

    ``options`` are further :class:`ModbusSimulator` keyword arguments (``units``,
    ``framer``, ``serial_port``, ``register_map``, ``faults``, ...). ``on_ready`` is called
    once the port is bound (with ``port=0``, read ``sim.port``).
    """
    plant = Plant(seed=seed, extra_signals=extra)
    async with ModbusSimulator(plant, host=host, port=port, unit=unit, **options) as sim:
        if on_ready is not None:
            on_ready(sim)
        await asyncio.Event().wait()
