"""Lines: the physical paths requests travel on, shared by the devices on them.

A *line* is one pymodbus client: a Modbus TCP session, a serial port (RTU) or a TCP socket
to a serial-to-Ethernet converter (RTU over TCP). Several device entries may sit on one
RS-485 line, so serial and RTU-over-TCP lines are kept in a process-wide registry keyed by
the port: the devices that name the same port share one client and one lock, requests go
out one at a time, and :attr:`Line.inter_frame_delay` of silence is kept between the end
of an answer and the next request. A Modbus TCP line belongs to one device (TCP carries a
transaction id, so it needs no such care).

Lines are attached by :meth:`ModbusAdapter.connect` and detached by its ``close``; the
client is closed when the last device detaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from adapters.modbus.config import ModbusDeviceConfig
from gateway.errors import ConnectError

__all__ = ["Client", "Line", "LineSettings", "attach", "detach", "lines"]

log = logging.getLogger(__name__)

Client = AsyncModbusTcpClient | AsyncModbusSerialClient


@dataclass(frozen=True, slots=True)
class LineSettings:
    """What must agree between the devices that share a line."""

    transport: str
    endpoint: str
    baudrate: int = 0
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @classmethod
    def of(cls, config: ModbusDeviceConfig) -> LineSettings:
        if config.transport == "rtu":
            return cls(
                "rtu", config.endpoint, config.baudrate, config.parity, config.stopbits,
                config.bytesize,
            )
        return cls(config.transport, config.endpoint)

    def describe(self) -> str:
        if self.transport == "rtu":
            return (
                f"{self.endpoint} at {self.baudrate} baud "
                f"{self.bytesize}{self.parity}{self.stopbits}"
            )
        return f"{self.transport} {self.endpoint}"


class Line:
    """One client and the lock that serialises the requests of every device on it."""

    def __init__(self, key: str, settings: LineSettings, config: ModbusDeviceConfig) -> None:
        self.key = key
        self.settings = settings
        self.inter_frame_delay = config.effective_inter_frame_delay
        self.users: set[int] = set()
        self.client: Client | None = None
        self._config = config
        self._lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._quiet_until = 0.0
        self._in_flight = 0
        self._connect_error: BaseException | None = None

    @property
    def shared(self) -> bool:
        """Whether other devices use this line too."""
        return len(self.users) > 1

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def _new_client(self) -> Client:
        cfg = self._config
        common: dict[str, Any] = {
            "name": f"modbus:{self.key}",
            # A generous backstop only: each request is limited by its device's
            # request_timeout (asyncio.timeout in ModbusAdapter), and retried there.
            "timeout": max(cfg.timeout, cfg.effective_request_timeout) * 4,
            "retries": 0,
            "reconnect_delay": 0,  # 0 disables pymodbus' background reconnect task
            "reconnect_delay_max": 0,
            "trace_connect": self._on_connection_change,
        }
        if cfg.transport == "rtu":
            return AsyncModbusSerialClient(
                str(cfg.serial_port),
                framer=FramerType.RTU,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
                **common,
            )
        framer = FramerType.RTU if cfg.transport == "rtu-over-tcp" else FramerType.SOCKET
        return AsyncModbusTcpClient(str(cfg.host), port=cfg.port, framer=framer, **common)

    async def connect(self) -> None:
        """Open the client unless it is open. Raises :class:`ConnectError`."""
        async with self._connect_lock:
            if self.connected:
                return
            self.drop()
            client = self._new_client()
            self._connect_error = None
            self._capture_connect_error(client)
            try:
                ok = await client.connect()
            except BaseException:
                client.close()
                raise
            if not ok:
                client.close()
                cause, self._connect_error = self._connect_error, None
                timeout = client.comm_params.timeout_connect
                detail = f": {cause}" if cause else f": no connection within {timeout:g}s"
                raise ConnectError(f"cannot open {self.settings.describe()}{detail}") from cause
            self.client = client

    def _capture_connect_error(self, client: Client) -> None:
        """Remember why a connect failed: pymodbus logs the OSError and returns False, and
        "connection refused" vs "no such device" matters to whoever reads the status."""
        ctx = client.ctx
        create = getattr(ctx, "call_create", None)
        if create is None:  # another pymodbus layout: keep the generic message
            return

        async def create_and_remember() -> Any:
            try:
                return await create()
            except Exception as exc:  # serial ports raise SerialException (an OSError)
                self._connect_error = exc
                raise

        ctx.call_create = create_and_remember

    def _on_connection_change(self, connected: bool) -> None:
        """pymodbus callback. When the peer closes the session while a request waits for
        its answer, fail that request now instead of after its timeout."""
        if connected or self.client is None or not self._in_flight:
            return
        future = getattr(self.client.ctx, "response_future", None)
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ConnectionResetError("connection closed by the device"))

    def drop(self) -> None:
        """Close the client (every device on the line sees "not connected" next)."""
        client, self.client = self.client, None
        if client is not None:
            client.close()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[Client]:
        """Hold the line for one request: waits for the lock and the inter-frame silence,
        yields the client, and starts the next silence when the exchange ends. Raises
        :class:`ConnectError` when the client is not connected."""
        async with self._lock:
            client = self.client
            if client is None or not client.connected:
                raise ConnectError(f"{self.settings.describe()}: not connected")
            if self.inter_frame_delay:
                loop = asyncio.get_running_loop()
                wait = self._quiet_until - loop.time()
                if wait > 0:
                    # The line's timing rule (Modbus over serial line §2.5.1.1), not a
                    # retry or a poll: the bus must stay silent between frames.
                    await asyncio.sleep(wait)
            self._in_flight += 1
            try:
                yield client
            finally:
                self._in_flight -= 1
                if self.inter_frame_delay:
                    self._quiet_until = asyncio.get_running_loop().time() + self.inter_frame_delay

    async def run(self, call: Callable[[Client], Awaitable[Any]]) -> Any:
        """``call(client)`` during one :meth:`turn`."""
        async with self.turn() as client:
            return await call(client)


_LINES: dict[str, Line] = {}


def lines() -> dict[str, Line]:
    """The lines in use now, by key (for tests and diagnostics)."""
    return dict(_LINES)


def _key(config: ModbusDeviceConfig, owner: int) -> str:
    if config.transport == "rtu":
        return f"rtu:{config.serial_port}"
    if config.transport == "rtu-over-tcp":
        return f"rtu-over-tcp:{config.host}:{config.port}"
    return f"tcp:{config.host}:{config.port}#{owner}"


def attach(config: ModbusDeviceConfig, owner: int) -> Line:
    """The line for ``config``, registering ``owner`` (an id) as a user. Idempotent per
    owner. Raises :class:`ConnectError` when the line is in use with other settings
    (two device entries on one serial port with different baud rates)."""
    key = _key(config, owner)
    line = _LINES.get(key)
    settings = LineSettings.of(config)
    if line is None:
        line = _LINES[key] = Line(key, settings, config)
    elif line.settings != settings and owner not in line.users:
        raise ConnectError(
            f"device {config.name!r} wants {settings.describe()}, but other devices use the "
            f"line as {line.settings.describe()}; devices on one line need the same settings"
        )
    line.users.add(owner)
    return line


def detach(line: Line, owner: int) -> None:
    """Unregister ``owner``; the last user closes the client and forgets the line."""
    line.users.discard(owner)
    if not line.users:
        line.drop()
        if _LINES.get(line.key) is line:
            del _LINES[line.key]
