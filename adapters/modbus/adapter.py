"""The Modbus TCP adapter: block reads through a precomputed plan, typed writes.

The runtime owns retries, reconnects and time limits (STYLE §2), so the pymodbus client is
configured with no retries and no automatic reconnect; each request is limited to the
device ``timeout``. A broken or unresponsive session raises :class:`ConnectError` and is
dropped, so the runtime's next :meth:`ModbusAdapter.connect` starts a clean one; a Modbus
exception response only marks the tags of that request bad.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from adapters.base import Quality, Reading, Value, now_ms
from adapters.modbus.codec import TYPES, BlockDecoder, Field, decode, encode, to_engineering, to_raw
from adapters.modbus.config import ModbusDeviceConfig, ModbusTagConfig
from adapters.modbus.planner import Block, Item, plan
from gateway.errors import ConnectError, DeviceError, ProtocolError, ReadOnlyError

__all__ = ["EXCEPTION_NAMES", "ModbusAdapter"]

log = logging.getLogger(__name__)

EXCEPTION_NAMES: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    7: "negative acknowledge",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
"""Modbus exception codes (Modbus Application Protocol v1.1b3, §7) and their names."""

_PLAN_CACHE_SIZE = 32
"""Tag groups whose plans are kept. The scheduler reuses one tuple per group, so this only
bounds memory when a caller builds a new sequence for every read (e.g. read-now commands)."""


def exception_reason(code: int) -> str:
    """``"modbus exception 2 (illegal data address)"`` — the reason on bad readings."""
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown code')})"


@dataclass(frozen=True, slots=True)
class _PlannedBlock:
    """A read request with everything needed to turn its answer into readings."""

    unit: int
    function_code: int
    start: int
    count: int
    decoder: BlockDecoder
    targets: tuple[tuple[int, str], ...]
    """``(index into the read's tag sequence, tag name)`` in the decoder's value order."""
    label: str
    """For error messages, e.g. ``reading holding registers 0..124 of unit 1``."""


@dataclass(frozen=True, slots=True)
class _Plan:
    tags: Sequence[ModbusTagConfig]
    """Held so the sequence cannot be collected and its ``id`` reused while cached."""
    blocks: tuple[_PlannedBlock, ...]
    size: int


class ModbusAdapter:
    """One Modbus TCP session to one device (``type: modbus``).

    Building it does no I/O: the config is already validated and the plan for all its tags
    is computed here, so a bad tag list fails at start-up rather than at the first poll.
    Calls may overlap (a write command during a poll): the pymodbus client serialises
    requests on one connection with its own lock.
    """

    def __init__(self, config: ModbusDeviceConfig) -> None:
        if not isinstance(config, ModbusDeviceConfig):
            raise TypeError(f"expected ModbusDeviceConfig, got {type(config).__name__}")
        self.config = config
        self._client: AsyncModbusTcpClient | None = None
        self._plans: OrderedDict[int, _Plan] = OrderedDict()
        self._connect_error: BaseException | None = None
        self._in_flight = 0  # requests awaiting an answer (a write may overlap a poll)
        self.plan_for(config.tags)

    # -- planning ---------------------------------------------------------------------

    def plan_for(self, tags: Sequence[ModbusTagConfig]) -> tuple[_PlannedBlock, ...]:
        """The read requests for ``tags``, cached by the identity of the sequence."""
        cached = self._plans.get(id(tags))
        if cached is not None and cached.tags is tags and cached.size == len(tags):
            self._plans.move_to_end(id(tags))
            return cached.blocks
        blocks = self._build_plan(tags)
        self._plans[id(tags)] = _Plan(tags, blocks, len(tags))
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return blocks

    def _build_plan(self, tags: Sequence[ModbusTagConfig]) -> tuple[_PlannedBlock, ...]:
        cfg = self.config
        for tag in tags:
            if not isinstance(tag, ModbusTagConfig):
                raise TypeError(f"expected ModbusTagConfig, got {type(tag).__name__}")
        items = [
            Item(i, cfg.unit, tag.table, tag.address, tag.registers) for i, tag in enumerate(tags)
        ]
        planned = []
        for block in plan(items, max_registers=cfg.max_registers_per_request, max_gap=cfg.max_gap):
            planned.append(self._plan_block(block, tags))
        return tuple(planned)

    def _plan_block(self, block: Block, tags: Sequence[ModbusTagConfig]) -> _PlannedBlock:
        fields = []
        for index, offset in block.members:
            tag = tags[index]
            byte_order, word_order = self.config.layout(tag)
            fields.append(
                Field(offset, TYPES[tag.type], byte_order, word_order, tag.scale, tag.offset)
            )
        decoder = BlockDecoder(block.count, fields)
        targets = tuple(
            (block.members[i][0], tags[block.members[i][0]].name) for i in decoder.order
        )
        return _PlannedBlock(
            block.unit, 3 if block.table == "holding" else 4, block.start, block.count,
            decoder, targets,
            f"reading {block.table} registers {block.start}..{block.start + block.count - 1} "
            f"of unit {block.unit}",
        )

    # -- session ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a session is open (as far as the transport knows)."""
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        """Open the TCP session. Idempotent; raises :class:`ConnectError` when the device
        cannot be reached within the device ``timeout``."""
        if self.connected:
            return
        self._drop()
        cfg = self.config
        client = AsyncModbusTcpClient(
            cfg.host,
            port=cfg.port,
            name=f"modbus:{cfg.name}",
            timeout=cfg.timeout,
            retries=0,  # the runtime retries
            reconnect_delay=0,  # 0 disables pymodbus' background reconnect task
            reconnect_delay_max=0,
            trace_connect=self._on_connection_change,
        )
        self._connect_error = None
        self._capture_connect_error(client)
        try:
            ok = await client.connect()
        except BaseException:
            client.close()
            raise
        if not ok:
            client.close()
            cause = self._connect_error
            self._connect_error = None
            detail = f": {cause}" if cause else f": no answer within {cfg.timeout:g}s"
            raise ConnectError(
                f"cannot connect to modbus device {cfg.name!r} at {cfg.host}:{cfg.port}{detail}"
            ) from cause
        self._client = client

    def _capture_connect_error(self, client: AsyncModbusTcpClient) -> None:
        """Remember why a connect failed: pymodbus logs the OSError and returns False, and
        "connection refused" vs "no route to host" matters to whoever reads the status."""
        ctx = client.ctx
        create = getattr(ctx, "call_create", None)
        if create is None:  # another pymodbus layout: keep the generic message
            return

        async def create_and_remember() -> Any:
            try:
                return await create()
            except OSError as exc:
                self._connect_error = exc
                raise

        ctx.call_create = create_and_remember

    def _on_connection_change(self, connected: bool) -> None:
        """pymodbus callback. When the peer closes the session while a request waits for
        its answer, fail that request now instead of after the full timeout."""
        if connected or self._client is None or not self._in_flight:
            return
        future = getattr(self._client.ctx, "response_future", None)
        if isinstance(future, asyncio.Future) and not future.done():
            future.set_exception(ConnectionResetError("connection closed by the device"))

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        """Close the session. Idempotent; never raises."""
        try:
            self._drop()
        except Exception:  # closing must not fail the caller's shutdown path
            log.exception("closing modbus session to %s failed", self.config.name)

    # -- requests ---------------------------------------------------------------------

    def _session(self) -> AsyncModbusTcpClient:
        client = self._client
        if client is None or not client.connected:
            self._drop()
            cfg = self.config
            raise ConnectError(
                f"modbus device {cfg.name!r} at {cfg.host}:{cfg.port}: not connected"
            )
        return client

    async def _execute(
        self, what: str, method: Callable[..., Awaitable[ModbusPDU]], *args: Any, **kwargs: Any
    ) -> ModbusPDU:
        """Run one client request; any transport failure drops the session and raises
        :class:`ConnectError`. Cancellation (the runtime's timeout) drops it too, because a
        late answer would otherwise be taken for the answer to the next request."""
        cfg = self.config
        self._in_flight += 1
        try:
            response = await method(*args, **kwargs)
        except asyncio.CancelledError:
            self._drop()
            raise
        except (ModbusException, OSError) as exc:
            self._drop()
            text = str(exc) or type(exc).__name__
            if "No response received" in text:
                text = f"no answer within {cfg.timeout:g}s"
            raise ConnectError(
                f"modbus device {cfg.name!r} at {cfg.host}:{cfg.port}: {what} failed: {text}"
            ) from exc
        finally:
            self._in_flight -= 1
        return response

    async def read(self, tags: Sequence[ModbusTagConfig]) -> list[Reading]:
        """One reading per tag, in order. A block the device refuses with a Modbus exception
        gives its tags bad readings (reason ``modbus exception N (name)``); the other blocks
        are unaffected. Raises :class:`ConnectError` when the session is gone or silent."""
        blocks = self.plan_for(tags)
        client = self._session()
        device = self.config.name
        readings: list[Reading] = [None] * len(tags)  # type: ignore[list-item]
        good = Quality.GOOD
        new = tuple.__new__  # skips NamedTuple's Python-level __new__: half the cost per tag
        for block in blocks:
            response = await self._execute(
                block.label,
                client.read_holding_registers
                if block.function_code == 3
                else client.read_input_registers,
                block.start,
                count=block.count,
                device_id=block.unit,
            )
            ts = now_ms()
            reason = None
            if response.isError():
                reason = exception_reason(getattr(response, "exception_code", 0))
            elif len(response.registers) != block.count:
                reason = (
                    f"malformed response: {len(response.registers)} registers "
                    f"instead of {block.count}"
                )
            if reason is not None:
                for index, name in block.targets:
                    readings[index] = Reading(device, name, ts, None, Quality.BAD, reason)
                continue
            values = block.decoder.decode(response.registers)
            for (index, name), value in zip(block.targets, values, strict=True):
                readings[index] = new(Reading, (device, name, ts, value, good, None))
        return readings

    async def write(self, tag: ModbusTagConfig, value: Value) -> Value:
        """Encode ``value`` (inverse scale/offset, rounded for integer types) and write it
        to the holding registers of ``tag`` (function code 6 for one register, 16 for more).

        Returns the engineering value the device now holds. Raises :class:`WriteError` for
        input registers and unencodable values (before any I/O), :class:`DeviceError` with
        the Modbus exception code when the device refuses, :class:`ConnectError` when the
        session is gone or silent.
        """
        if not isinstance(tag, ModbusTagConfig):
            raise TypeError(f"expected ModbusTagConfig, got {type(tag).__name__}")
        if tag.table != "holding":
            raise ReadOnlyError(
                f"tag {tag.name!r} is in the {tag.table} register table, which is read-only"
            )
        dtype = TYPES[tag.type]
        raw = to_raw(dtype, value, tag.scale, tag.offset, tag.name)
        byte_order, word_order = self.config.layout(tag)
        registers = encode(dtype, raw, byte_order, word_order)
        client = self._session()
        unit = self.config.unit
        what = f"writing {tag.name!r}"
        if len(registers) == 1:
            response = await self._execute(
                what, client.write_register, tag.address, registers[0], device_id=unit
            )
        else:
            response = await self._execute(
                what, client.write_registers, tag.address, registers, device_id=unit
            )
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise DeviceError(
                f"modbus device {self.config.name!r} refused writing {value!r} to {tag.name!r}: "
                f"{exception_reason(code)}",
                code=code,
            )
        if response.function_code not in (6, 16):
            raise ProtocolError(
                f"modbus device {self.config.name!r} answered a write with function code "
                f"{response.function_code}"
            )
        held = decode(dtype, registers, byte_order, word_order)
        return to_engineering(dtype, held, tag.scale, tag.offset)
