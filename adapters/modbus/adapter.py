"""The Modbus adapter: block reads through a precomputed plan, typed writes, three transports.

The runtime owns reconnects, backoff and the time limit of a whole read (STYLE §2). This
module owns the request layer: each request is limited to the device's
``request_timeout`` and retried at most ``retries`` times when no answer comes (the only
retry in the adapter), and a block refused with exception 2 is bisected until the refused
addresses are isolated. Requests go through a :class:`~adapters.modbus.line.Line`, which
serialises the devices sharing a serial line.

Failure outcomes:

* a Modbus exception answer marks the tags of that request bad (reason
  ``modbus exception N (name)``) and keeps the session;
* a unit that stays silent through all attempts marks the rest of its tags in this read
  bad (``timeout: unit U did not answer ...``); when *nothing* in a read answered, the
  read raises :class:`ConnectError` instead, so that the runtime reports the device
  disconnected and reconnects with backoff;
* a broken transport raises :class:`ConnectError` and drops the session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pymodbus.exceptions import ModbusException, ModbusIOException
from pymodbus.pdu import ModbusPDU

from adapters.base import Quality, Reading, Value, now_ms
from adapters.modbus.codec import (
    BitDecoder,
    BlockDecoder,
    Field,
    decode,
    decode_string,
    encode,
    encode_string,
    to_engineering,
    to_raw,
)
from adapters.modbus.config import ModbusDeviceConfig, ModbusTagConfig
from adapters.modbus.line import Client, Line, attach, detach
from adapters.modbus.planner import BIT_TABLES, Block, Item, plan
from gateway.errors import ConnectError, DeviceError, ProtocolError, ReadOnlyError, WriteError

__all__ = ["EXCEPTION_NAMES", "ModbusAdapter", "exception_reason"]

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

ILLEGAL_DATA_ADDRESS = 2

FUNCTION_CODES = {"coils": 1, "discrete_inputs": 2, "holding": 3, "input": 4}
"""Read function code of each table."""

_PLAN_CACHE_SIZE = 32
"""Tag groups whose plans are kept. The scheduler reuses one tuple per group, so this only
bounds memory when a caller builds a new sequence for every read (e.g. read-now commands)."""


def exception_reason(code: int) -> str:
    """``"modbus exception 2 (illegal data address)"`` — the reason on bad readings."""
    return f"modbus exception {code} ({EXCEPTION_NAMES.get(code, 'unknown code')})"


class _NoAnswer(Exception):
    """Every attempt of one request went unanswered (internal to the read path)."""


@dataclass(frozen=True, slots=True)
class _PlannedBlock:
    """A read request with everything needed to turn its answer into readings."""

    unit: int
    table: str
    function_code: int
    start: int
    count: int
    items: tuple[Item, ...]
    decoder: BlockDecoder | BitDecoder
    targets: tuple[tuple[int, str], ...]
    """``(index into the read's tag sequence, tag name)`` in the decoder's value order."""
    enums: tuple[tuple[int, dict[int, str]], ...]
    """``(position in targets, raw → label)`` of the enum tags."""
    label: str
    """For messages, e.g. ``holding registers 0..124 of unit 1``."""
    isolated: str | None = None
    """Set on a one-tag block refused with exception 2: the reason its tag stays bad
    without a request until the plan is restored."""


@dataclass(slots=True)
class _Plan:
    tags: Sequence[ModbusTagConfig]
    """Held so the sequence cannot be collected and its ``id`` reused while cached."""
    size: int
    original: tuple[_PlannedBlock, ...]
    blocks: tuple[_PlannedBlock, ...]
    """What is read now: :attr:`original`, or it with refused blocks split (bisection)."""
    restore_at: float | None = None
    """``time.monotonic()`` after which :attr:`original` is tried again."""


@dataclass(slots=True)
class _ReadState:
    readings: list[Reading]
    silent: dict[int, str] = field(default_factory=dict)
    """Units that did not answer in this read, and the reason given to their tags."""
    answered: bool = False
    attempted: bool = False


class ModbusAdapter:
    """The tags of one Modbus device entry (``type: modbus``), over TCP, RTU or RTU over TCP.

    Building it does no I/O: the config is already validated and the plan for all its tags
    is computed here, so a bad tag list fails at start-up rather than at the first poll.
    Calls may overlap (a write command during a poll): requests are serialised on the line.
    """

    def __init__(self, config: ModbusDeviceConfig) -> None:
        if not isinstance(config, ModbusDeviceConfig):
            raise TypeError(f"expected ModbusDeviceConfig, got {type(config).__name__}")
        self.config = config
        self._line: Line | None = None
        self._plans: OrderedDict[int, _Plan] = OrderedDict()
        self._request_timeout = config.effective_request_timeout
        self.requests = 0
        """Requests sent so far (attempts included), for tests and benchmarks."""
        self.plan_for(config.tags)

    # -- planning ---------------------------------------------------------------------

    def plan_for(self, tags: Sequence[ModbusTagConfig]) -> tuple[_PlannedBlock, ...]:
        """The read requests for ``tags`` as they will be sent now (after any bisection),
        cached by the identity of the sequence."""
        return self._plan(tags).blocks

    def _plan(self, tags: Sequence[ModbusTagConfig]) -> _Plan:
        cached = self._plans.get(id(tags))
        if cached is not None and cached.tags is tags and cached.size == len(tags):
            self._plans.move_to_end(id(tags))
            return cached
        blocks = self._build_plan(tags)
        entry = _Plan(tags, len(tags), blocks, blocks)
        self._plans[id(tags)] = entry
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return entry

    def _build_plan(self, tags: Sequence[ModbusTagConfig]) -> tuple[_PlannedBlock, ...]:
        cfg = self.config
        for tag in tags:
            if not isinstance(tag, ModbusTagConfig):
                raise TypeError(f"expected ModbusTagConfig, got {type(tag).__name__}")
        items = [
            Item(i, cfg.unit_of(tag), tag.table, tag.address, tag.registers)
            for i, tag in enumerate(tags)
        ]
        return tuple(self._blocks(items, tags))

    def _blocks(
        self, items: Sequence[Item], tags: Sequence[ModbusTagConfig]
    ) -> list[_PlannedBlock]:
        cfg = self.config
        blocks = plan(
            items,
            max_registers=cfg.max_registers_per_request,
            max_bits=cfg.max_bits_per_request,
            max_gap=cfg.max_gap,
        )
        by_index = {item.index: item for item in items}
        return [self._plan_block(b, tags, by_index) for b in blocks]

    def _plan_block(
        self, block: Block, tags: Sequence[ModbusTagConfig], by_index: dict[int, Item]
    ) -> _PlannedBlock:
        decoder: BlockDecoder | BitDecoder
        if block.table in BIT_TABLES:
            decoder = BitDecoder(block.count, [offset for _, offset in block.members])
        else:
            fields = []
            for index, offset in block.members:
                tag = tags[index]
                byte_order, word_order = self.config.layout(tag)
                fields.append(
                    Field(
                        offset, tag.dtype, byte_order, word_order, tag.scale, tag.offset,
                        tag.bit or 0,
                    )
                )
            decoder = BlockDecoder(block.count, fields)
        targets = tuple(
            (block.members[i][0], tags[block.members[i][0]].name) for i in decoder.order
        )
        enums = tuple(
            (pos, enum)
            for pos, (index, _) in enumerate(targets)
            if (enum := tags[index].enum) is not None
        )
        what = block.table.replace("_", " ") if block.table in BIT_TABLES else (
            f"{block.table} registers"
        )
        return _PlannedBlock(
            block.unit, block.table, FUNCTION_CODES[block.table], block.start, block.count,
            tuple(by_index[index] for index, _ in block.members), decoder, targets, enums,
            f"{what} {block.start}..{block.start + block.count - 1} of unit {block.unit}",
        )

    # -- session ----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the line is open (as far as the transport knows)."""
        return self._line is not None and self._line.connected

    async def connect(self) -> None:
        """Open the line (or join the open line of another device on the same serial
        port). Idempotent; raises :class:`ConnectError` when the device cannot be reached
        within the device ``timeout`` or the line is in use with other settings."""
        if self.connected:
            return
        line = self._line
        if line is None:
            line = self._line = attach(self.config, id(self))
        try:
            await line.connect()
        except ConnectError as exc:
            raise ConnectError(f"modbus device {self.config.name!r}: {exc}") from exc.__cause__

    async def close(self) -> None:
        """Leave the line; the last device on it closes it. Idempotent; never raises."""
        line, self._line = self._line, None
        if line is None:
            return
        try:
            detach(line, id(self))
        except Exception:  # closing must not fail the caller's shutdown path
            log.exception("closing modbus line of %s failed", self.config.name)

    def _drop(self) -> None:
        if self._line is not None:
            self._line.drop()

    # -- requests ---------------------------------------------------------------------

    def _where(self) -> str:
        return f"modbus device {self.config.name!r} at {self.config.endpoint}"

    async def _request(
        self, what: str, call: Callable[[Client], Awaitable[ModbusPDU]]
    ) -> ModbusPDU:
        """One request with the request layer's bounded retries.

        Raises :class:`_NoAnswer` when every attempt went unanswered (the caller decides
        whether that is a silent unit or a dead device), :class:`ConnectError` when the
        line is closed or broken (the session is dropped). Cancellation (the runtime's
        time limit) drops an unshared session too: a late answer would otherwise be taken
        for the answer to the next request.
        """
        line = self._line
        if line is None:
            raise ConnectError(f"{self._where()}: not connected")
        attempts = self.config.retries + 1
        timeout = self._request_timeout
        for _attempt in range(attempts):
            try:
                async with line.turn() as client:
                    self.requests += 1
                    async with asyncio.timeout(timeout):
                        return await call(client)
            except TimeoutError:
                continue
            except asyncio.CancelledError:
                if not line.shared:
                    self._drop()
                raise
            except ModbusIOException as exc:
                # A stale answer (wrong transaction or unit id) after a timed-out attempt:
                # the next attempt resynchronises.
                if "transaction id" in str(exc) or "device id" in str(exc):
                    continue
                self._drop()
                raise ConnectError(f"{self._where()}: {what} failed: {exc}") from exc
            except ConnectError as exc:
                raise ConnectError(f"{self._where()}: {what}: not connected") from exc
            except (ModbusException, OSError) as exc:
                self._drop()
                text = str(exc) or type(exc).__name__
                raise ConnectError(f"{self._where()}: {what} failed: {text}") from exc
        raise _NoAnswer(
            f"did not answer within {timeout:g}s"
            + (f" ({attempts} attempts)" if attempts > 1 else "")
        )

    async def read(self, tags: Sequence[ModbusTagConfig]) -> list[Reading]:
        """One reading per tag, in order.

        A block the device refuses with a Modbus exception gives its tags bad readings
        (reason ``modbus exception N (name)``); with exception 2 the block is split until
        the refused addresses are isolated and the others read good. Raises
        :class:`ConnectError` when the session is gone or nothing answered.
        """
        entry = self._plan(tags)
        if entry.restore_at is not None and time.monotonic() >= entry.restore_at:
            entry.blocks, entry.restore_at = entry.original, None
        if self._line is None or not self._line.connected:
            raise ConnectError(f"{self._where()}: not connected")
        state = _ReadState([None] * len(tags))  # type: ignore[list-item]
        current: list[_PlannedBlock] = []
        changed = False
        for block in entry.blocks:
            done = await self._read_block(block, tags, state)
            changed = changed or done != [block]
            current.extend(done)
        if state.attempted and not state.answered:
            self._drop_if_unshared()
            reasons = sorted(set(state.silent.values()))
            raise ConnectError(f"{self._where()}: {'; '.join(reasons)}")
        if changed:
            entry.blocks = tuple(current)
            entry.restore_at = time.monotonic() + self.config.bad_address_retry
            isolated = [b.targets[0][1] for b in current if b.isolated]
            log.warning(
                "%s: split refused blocks into %d requests; %d tag(s) isolated (%s), "
                "retried in %gs",
                self.config.name, len(current), len(isolated), ", ".join(isolated[:10]),
                self.config.bad_address_retry,
            )
        return state.readings

    def _drop_if_unshared(self) -> None:
        if self._line is not None and not self._line.shared:
            self._drop()

    def _bad(self, block: _PlannedBlock, state: _ReadState, reason: str) -> None:
        ts = now_ms()
        device = self.config.name
        for index, name in block.targets:
            state.readings[index] = Reading(device, name, ts, None, Quality.BAD, reason)

    async def _read_block(
        self, block: _PlannedBlock, tags: Sequence[ModbusTagConfig], state: _ReadState
    ) -> list[_PlannedBlock]:
        """Fill the readings of ``block``'s tags; returns the blocks that replace it in
        the plan (``[block]`` unless it was split)."""
        if block.isolated is not None:
            self._bad(block, state, block.isolated)
            return [block]
        silent = state.silent.get(block.unit)
        if silent is not None:
            self._bad(block, state, silent)
            return [block]
        state.attempted = True
        try:
            response = await self._request(f"reading {block.label}", self._reader(block))
        except _NoAnswer as exc:
            reason = f"timeout: unit {block.unit} {exc}"
            state.silent[block.unit] = reason
            self._bad(block, state, reason)
            return [block]
        state.answered = True
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            if code == ILLEGAL_DATA_ADDRESS:
                return await self._bisect(block, tags, state)
            self._bad(block, state, exception_reason(code))
            return [block]
        self._fill(block, response, state)
        return [block]

    async def _bisect(
        self, block: _PlannedBlock, tags: Sequence[ModbusTagConfig], state: _ReadState
    ) -> list[_PlannedBlock]:
        reason = exception_reason(ILLEGAL_DATA_ADDRESS)
        if len(block.items) == 1:
            isolated = replace(
                block,
                isolated=f"{reason}; isolated, tried again within "
                f"{self.config.bad_address_retry:g}s",
            )
            self._bad(block, state, reason)
            return [isolated]
        ordered = sorted(block.items, key=lambda it: (it.address, -it.registers))
        half = len(ordered) // 2
        out: list[_PlannedBlock] = []
        for part in (ordered[:half], ordered[half:]):
            for sub in self._blocks(part, tags):
                out.extend(await self._read_block(sub, tags, state))
        return out

    @staticmethod
    def _reader(block: _PlannedBlock) -> Callable[[Client], Awaitable[ModbusPDU]]:
        start, count, unit = block.start, block.count, block.unit
        fc = block.function_code
        if fc == 1:
            return lambda c: c.read_coils(start, count=count, device_id=unit)
        if fc == 2:
            return lambda c: c.read_discrete_inputs(start, count=count, device_id=unit)
        if fc == 3:
            return lambda c: c.read_holding_registers(start, count=count, device_id=unit)
        return lambda c: c.read_input_registers(start, count=count, device_id=unit)

    def _fill(self, block: _PlannedBlock, response: ModbusPDU, state: _ReadState) -> None:
        ts = now_ms()
        data: Sequence[Any]
        if block.function_code in (1, 2):
            data = response.bits
            short = len(data) < block.count
        else:
            data = response.registers
            short = len(data) != block.count
        if short:
            self._bad(
                block, state,
                f"malformed response: {len(data)} values instead of {block.count}",
            )
            return
        values = block.decoder.decode(data)  # type: ignore[arg-type]  # bits or registers
        device = self.config.name
        readings = state.readings
        good = Quality.GOOD
        new = tuple.__new__  # skips NamedTuple's Python-level __new__: half the cost per tag
        for (index, name), value in zip(block.targets, values, strict=True):
            readings[index] = new(Reading, (device, name, ts, value, good, None))
        for pos, enum in block.enums:
            index, name = block.targets[pos]
            raw = int(values[pos])
            label = enum.get(raw)
            readings[index] = (
                Reading(device, name, ts, label)
                if label is not None
                else Reading(
                    device, name, ts, raw, Quality.UNCERTAIN,
                    f"raw value {raw} has no label in the enum",
                )
            )

    # -- writes -----------------------------------------------------------------------

    async def write(self, tag: ModbusTagConfig, value: Value) -> Value:
        """Encode ``value`` by the tag's type and write it: coils with function code 5
        (15 when ``single_register_writes`` is false), one-register values with 6 (or 16),
        wider values with 16; a ``bit`` of a holding register by reading the register and
        writing it back with the bit changed (not atomic against other masters).

        Enum tags take the label (or a labelled raw number); numbers get the inverse of
        scale/offset and are rounded (half to even) for integer types. Returns the value
        the device now holds, as a reading would report it. Raises :class:`ReadOnlyError`
        for input registers and discrete inputs and :class:`WriteError` for unencodable
        values (both before any I/O), :class:`DeviceError` with the Modbus exception code
        when the device refuses, :class:`ConnectError` when the session is gone or silent.
        """
        if not isinstance(tag, ModbusTagConfig):
            raise TypeError(f"expected ModbusTagConfig, got {type(tag).__name__}")
        if not tag.writable:
            kind = "discrete input" if tag.table == "discrete_inputs" else "input register"
            raise ReadOnlyError(
                f"tag {tag.name!r} is in the {kind} table, which is read-only"
            )
        raw = self._raw_for_write(tag, value)
        unit = self.config.unit_of(tag)
        what = f"writing {tag.name!r}"
        single = self.config.single_register_writes
        if tag.table == "coils":
            on = bool(raw)
            await self._write_request(
                what, value, tag,
                (lambda c: c.write_coil(tag.address, on, device_id=unit)) if single
                else (lambda c: c.write_coils(tag.address, [on], device_id=unit)),
                (5,) if single else (15,),
            )
            return self._engineering(tag, on)
        if tag.type == "bool":
            held = await self._write_bit(tag, bool(raw), value, unit)
            return self._engineering(tag, held)
        byte_order, word_order = self.config.layout(tag)
        dtype = tag.dtype
        if tag.type == "string":
            registers = encode_string(dtype, raw, tag.name, byte_order)
        else:
            assert isinstance(raw, int | float)
            registers = encode(dtype, raw, byte_order, word_order)
        await self._write_registers(what, value, tag, registers, unit)
        if tag.type == "string":
            text = decode_string(_bytes(registers, byte_order), int(dtype.maximum))
            return self._engineering(tag, text)
        number = decode(dtype, registers, byte_order, word_order)
        return self._engineering(tag, to_engineering(dtype, number, tag.scale, tag.offset))

    def _raw_for_write(self, tag: ModbusTagConfig, value: Value) -> int | float | bool | str:
        """The raw value for ``value``, or :class:`WriteError` naming the tag."""
        if tag.enum is not None:
            value = _enum_raw(tag, value)
        if tag.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise WriteError(
                f"tag {tag.name!r} (bool) needs true/false (or 1/0), got "
                f"{type(value).__name__} {value!r}"
            )
        if tag.type == "string":
            if not isinstance(value, str):
                raise WriteError(
                    f"tag {tag.name!r} (string) needs text, got {type(value).__name__} {value!r}"
                )
            return value
        return to_raw(tag.dtype, value, tag.scale, tag.offset, tag.name)

    @staticmethod
    def _engineering(tag: ModbusTagConfig, value: Value) -> Value:
        if tag.enum is not None and isinstance(value, int):
            return tag.enum.get(int(value), value)
        return value

    async def _write_registers(
        self, what: str, value: Value, tag: ModbusTagConfig, registers: list[int], unit: int
    ) -> None:
        if len(registers) == 1 and self.config.single_register_writes:
            await self._write_request(
                what, value, tag,
                lambda c: c.write_register(tag.address, registers[0], device_id=unit), (6,),
            )
        else:
            await self._write_request(
                what, value, tag,
                lambda c: c.write_registers(tag.address, registers, device_id=unit), (16,),
            )

    async def _write_bit(self, tag: ModbusTagConfig, on: bool, value: Value, unit: int) -> bool:
        assert tag.bit is not None
        byte_order, _ = self.config.layout(tag)
        response = await self._write_request(
            f"reading {tag.name!r} before setting bit {tag.bit}", value, tag,
            lambda c: c.read_holding_registers(tag.address, count=1, device_id=unit), (3,),
        )
        if len(response.registers) != 1:
            raise ProtocolError(f"{self._where()}: malformed answer reading {tag.name!r}")
        current = int(decode(tag.dtype, response.registers, byte_order, "big"))
        mask = 1 << tag.bit
        updated = current | mask if on else current & ~mask
        registers = encode(tag.dtype, updated, byte_order, "big")
        await self._write_registers(f"writing {tag.name!r}", value, tag, registers, unit)
        return on

    async def _write_request(
        self,
        what: str,
        value: Value,
        tag: ModbusTagConfig,
        call: Callable[[Client], Awaitable[ModbusPDU]],
        function_codes: tuple[int, ...],
    ) -> ModbusPDU:
        try:
            response = await self._request(what, call)
        except _NoAnswer as exc:
            self._drop_if_unshared()
            raise ConnectError(f"{self._where()}: {what}: {exc}") from None
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise DeviceError(
                f"{self._where()} refused {what} ({value!r}): {exception_reason(code)}",
                code=code,
            )
        if response.function_code not in function_codes:
            raise ProtocolError(
                f"{self._where()} answered {what} with function code {response.function_code}"
            )
        return response


def _bytes(registers: Sequence[int], byte_order: str) -> bytes:
    if byte_order == "little":
        return b"".join(r.to_bytes(2, "little") for r in registers)
    return b"".join(r.to_bytes(2, "big") for r in registers)


def _enum_raw(tag: ModbusTagConfig, value: Value) -> Value:
    """The raw value of an enum label (or of an already raw, labelled number)."""
    assert tag.enum is not None
    if isinstance(value, str):
        for raw, label in tag.enum.items():
            if label == value:
                return bool(raw) if tag.type == "bool" else raw
        labels = ", ".join(repr(label) for label in tag.enum.values())
        raise WriteError(f"tag {tag.name!r} has no label {value!r} (labels: {labels})")
    if isinstance(value, int) and not isinstance(value, bool) and value in tag.enum:
        return value
    if isinstance(value, bool) and tag.type == "bool":
        return value
    raise WriteError(
        f"tag {tag.name!r} takes one of its labels ({', '.join(tag.enum.values())}), "
        f"got {value!r}"
    )

