"""Register codecs: turn 16-bit Modbus registers into values and back.

Modbus defines only 16-bit registers; wider types span consecutive registers, and devices
disagree on both the byte order inside a register and the order of the registers (words).
Everything here is expressed with :mod:`struct`, using one identity that covers all four
conventional layouts (ABCD, CDAB, BADC, DCBA) for every width:

* take the block's bytes as sent (each register big-endian), or with the two bytes of every
  register swapped — the swapped copy when ``byte_order != word_order``;
* unpack that buffer with ``>`` when ``word_order`` is big and with ``<`` when it is little.

This lets :class:`BlockDecoder` decode a whole response with one ``pack`` of the registers
and one ``unpack_from`` per distinct layout (normally exactly one) instead of a conversion
per tag — the read path is the gateway's hot loop.

The numeric types are the entries of :data:`TYPES` (16, 32 and 64 bits). Two more kinds ride
on the same lanes with a conversion step after unpacking: a *bit* of a register
(:data:`BIT`, unpacked as a uint16, then masked) and a fixed-length ASCII *string*
(:func:`string_type`, unpacked as ``"{n}s"``; only the byte order inside each register
applies to it, registers are always in address order). Coils and discrete inputs are not
registers and are decoded by :class:`BitDecoder`.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from gateway.errors import WriteError

__all__ = [
    "BIT",
    "ORDERS",
    "TYPES",
    "BitDecoder",
    "BlockDecoder",
    "ByteOrder",
    "DataType",
    "Field",
    "WordOrder",
    "decode",
    "decode_string",
    "encode",
    "encode_string",
    "string_type",
    "to_engineering",
    "to_raw",
]

ByteOrder = Literal["big", "little"]
WordOrder = Literal["big", "little"]

ORDERS: dict[str, tuple[ByteOrder, WordOrder]] = {
    "ABCD": ("big", "big"),
    "CDAB": ("big", "little"),
    "BADC": ("little", "big"),
    "DCBA": ("little", "little"),
}
"""The shorthand names (bytes of a 32-bit value, most significant = A, as sent on the wire)
and the ``(byte_order, word_order)`` each one means."""


@dataclass(frozen=True, slots=True)
class DataType:
    """A register data type: its width and the :mod:`struct` code that (un)packs it."""

    name: str
    registers: int
    code: str
    kind: Literal["int", "float", "bit", "str"]
    minimum: float
    maximum: float


def _int_type(name: str, registers: int, code: str, signed: bool) -> DataType:
    bits = 16 * registers
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return DataType(name, registers, code, "int", lo, hi)


_FLOAT32_MAX = struct.unpack(">f", b"\x7f\x7f\xff\xff")[0]
_FLOAT64_MAX = sys.float_info.max

TYPES: dict[str, DataType] = {
    t.name: t
    for t in (
        _int_type("int16", 1, "h", signed=True),
        _int_type("uint16", 1, "H", signed=False),
        _int_type("int32", 2, "i", signed=True),
        _int_type("uint32", 2, "I", signed=False),
        _int_type("int64", 4, "q", signed=True),
        _int_type("uint64", 4, "Q", signed=False),
        DataType("float32", 2, "f", "float", -_FLOAT32_MAX, _FLOAT32_MAX),
        DataType("float64", 4, "d", "float", -_FLOAT64_MAX, _FLOAT64_MAX),
    )
}
"""Every numeric data type by its config name (``type:`` of a tag)."""

BIT = DataType("bool", 1, "H", "bit", 0, 1)
"""One bit of a register: the register is unpacked as a uint16, then the bit is taken."""


@lru_cache(maxsize=64)
def string_type(length: int) -> DataType:
    """A fixed-length ASCII string of ``length`` characters (bytes), two per register;
    an odd length leaves the last register's low byte (as sent) unused."""
    if not 1 <= length <= 250:
        raise ValueError(f"a string is 1..250 characters long, got {length}")
    registers = (length + 1) // 2
    return DataType("string", registers, f"{2 * registers}s", "str", 0, length)


def decode_string(raw: bytes, length: int) -> str:
    """The text of a string register area: the first ``length`` bytes, up to the first NUL,
    trailing spaces removed (devices pad with either); bytes above 127 become U+FFFD."""
    text = raw[:length].split(b"\x00", 1)[0]
    return text.decode("ascii", errors="replace").rstrip(" ")


def encode_string(
    dtype: DataType, value: object, tag: str, byte_order: ByteOrder = "big"
) -> list[int]:
    """Registers holding ``value`` padded with NUL bytes to the string's registers.

    Raises :class:`WriteError` naming ``tag`` for a value that is not ASCII text or is
    longer than the string.
    """
    if not isinstance(value, str):
        raise WriteError(f"tag {tag!r} (string) needs text, got {type(value).__name__} {value!r}")
    try:
        data = value.encode("ascii")
    except UnicodeEncodeError as exc:
        raise WriteError(f"tag {tag!r} (string) takes ASCII text only, got {value!r}") from exc
    if len(data) > dtype.maximum:
        raise WriteError(
            f"value {value!r} for tag {tag!r} is {len(data)} characters long; "
            f"the string holds at most {dtype.maximum:g}"
        )
    data = data.ljust(2 * dtype.registers, b"\x00")
    prefix = "<" if byte_order == "little" else ">"
    return list(_registers_struct(dtype.registers, prefix).unpack(data))


def _swapped(byte_order: ByteOrder, word_order: WordOrder) -> bool:
    return byte_order != word_order


def _prefix(word_order: WordOrder) -> str:
    return ">" if word_order == "big" else "<"


@lru_cache(maxsize=256)
def _registers_struct(count: int, prefix: str) -> struct.Struct:
    return struct.Struct(f"{prefix}{count}H")


def decode(
    dtype: DataType,
    registers: Sequence[int],
    byte_order: ByteOrder = "big",
    word_order: WordOrder = "big",
) -> int | float:
    """Decode one raw value from exactly ``dtype.registers`` registers.

    The single-value path (writes, tests); reads go through :class:`BlockDecoder`.
    """
    if len(registers) != dtype.registers:
        raise ValueError(f"{dtype.name} needs {dtype.registers} registers, got {len(registers)}")
    buffer_prefix = "<" if _swapped(byte_order, word_order) else ">"
    buffer = _registers_struct(dtype.registers, buffer_prefix).pack(*registers)
    value: int | float = struct.unpack(_prefix(word_order) + dtype.code, buffer)[0]
    return value


def encode(
    dtype: DataType,
    raw: int | float,
    byte_order: ByteOrder = "big",
    word_order: WordOrder = "big",
) -> list[int]:
    """Encode one raw value (already range-checked by :func:`to_raw`) into registers."""
    buffer = struct.pack(_prefix(word_order) + dtype.code, raw)
    buffer_prefix = "<" if _swapped(byte_order, word_order) else ">"
    return list(_registers_struct(dtype.registers, buffer_prefix).unpack(buffer))


def to_engineering(dtype: DataType, raw: int | float, scale: float, offset: float) -> int | float:
    """``raw * scale + offset``; an integer type without scaling stays a Python ``int``."""
    if scale == 1.0 and offset == 0.0:
        return raw
    return raw * scale + offset


def to_raw(
    dtype: DataType, value: object, scale: float, offset: float, tag: str
) -> int | float:
    """The raw register value for an engineering ``value``: ``(value - offset) / scale``,
    rounded to the nearest integer for integer types.

    Raises :class:`WriteError` naming ``tag`` when the value is not a finite number or its
    raw value does not fit the type; ``bool`` is refused rather than written as 0/1.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WriteError(
            f"tag {tag!r} ({dtype.name}) needs a number, got {type(value).__name__} {value!r}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise WriteError(f"tag {tag!r} ({dtype.name}) needs a finite number, got {value!r}")
    scaled = scale != 1.0 or offset != 0.0
    raw: int | float = (value - offset) / scale if scaled else value
    # Integers stay exact (no float detour); fractions round half to even.
    if dtype.kind == "float":
        raw = float(raw)
    elif not isinstance(raw, int):
        raw = round(raw)
    if not dtype.minimum <= raw <= dtype.maximum:
        lo = to_engineering(dtype, dtype.minimum, scale, offset)
        hi = to_engineering(dtype, dtype.maximum, scale, offset)
        lo, hi = min(lo, hi), max(lo, hi)
        detail = f" (raw {raw:g} after scale {scale:g}, offset {offset:g})" if scaled else ""
        raise WriteError(
            f"value {value!r} for tag {tag!r} is out of range for {dtype.name}: "
            f"allowed {lo:g}..{hi:g}{detail}"
        )
    return raw


@dataclass(frozen=True, slots=True)
class Field:
    """One value inside a register block: where it starts and how it is laid out."""

    offset: int
    """Registers from the start of the block."""
    dtype: DataType
    byte_order: ByteOrder = "big"
    word_order: WordOrder = "big"
    scale: float = 1.0
    value_offset: float = 0.0
    bit: int = 0
    """For :data:`BIT` fields: which bit of the register (0 = least significant)."""

    @property
    def swapped(self) -> bool:
        """Whether the field is unpacked from the byte-swapped copy of the block. Strings
        have no word order: their registers are always in address order."""
        if self.dtype.kind == "str":
            return self.byte_order == "little"
        return _swapped(self.byte_order, self.word_order)

    @property
    def lane_order(self) -> WordOrder:
        return "big" if self.dtype.kind == "str" else self.word_order


class _Lane:
    """One ``struct`` layout over the block: fields that share a buffer and an endianness
    and do not overlap, in address order, with pad bytes between them."""

    __slots__ = ("end", "fields", "fmt", "swapped", "word_order")

    def __init__(self, swapped: bool, word_order: WordOrder) -> None:
        self.swapped = swapped
        self.word_order = word_order
        self.fields: list[int] = []
        self.fmt: list[str] = []
        self.end = 0

    def take(self, index: int, field: Field) -> None:
        gap = field.offset - self.end
        if gap:
            self.fmt.append(f"{2 * gap}x")
        self.fmt.append(field.dtype.code)
        self.fields.append(index)
        self.end = field.offset + field.dtype.registers


class BlockDecoder:
    """Decodes the registers of one read request into the values of its fields.

    Built once per block before any I/O. :meth:`decode` returns values in :attr:`order`
    (indices into the ``fields`` given), already scaled; callers pair them with
    :attr:`order` instead of re-sorting, so the hot path does no per-field lookups
    beyond the scaling of fields that have one.
    """

    __slots__ = ("_convert", "_need_swapped", "_scaled", "_structs", "_wire", "count", "order")

    def __init__(self, count: int, fields: Sequence[Field]) -> None:
        for f in fields:
            if f.offset < 0 or f.offset + f.dtype.registers > count:
                raise ValueError(
                    f"{f.dtype.name} at offset {f.offset} does not fit a block of {count}"
                )
        self.count = count
        lanes: list[_Lane] = []
        by_position = sorted(range(len(fields)), key=lambda i: fields[i].offset)
        for i in by_position:
            f = fields[i]
            swapped, word_order = f.swapped, f.lane_order
            for lane in lanes:
                if (
                    lane.swapped == swapped
                    and lane.word_order == word_order
                    and lane.end <= f.offset
                ):
                    break
            else:
                lane = _Lane(swapped, word_order)
                lanes.append(lane)
            lane.take(i, f)
        self._structs = tuple(
            (lane.swapped, struct.Struct(_prefix(lane.word_order) + "".join(lane.fmt)))
            for lane in lanes
        )
        self.order: tuple[int, ...] = tuple(i for lane in lanes for i in lane.fields)
        self._need_swapped = any(lane.swapped for lane in lanes)
        self._wire = _registers_struct(count, ">")
        self._scaled = tuple(
            (pos, fields[i].scale, fields[i].value_offset)
            for pos, i in enumerate(self.order)
            if fields[i].scale != 1.0 or fields[i].value_offset != 0.0
        )
        self._convert = tuple(
            (pos, fields[i].dtype.kind, fields[i].bit, int(fields[i].dtype.maximum))
            for pos, i in enumerate(self.order)
            if fields[i].dtype.kind in ("bit", "str")
        )

    def decode(self, registers: Sequence[int]) -> list[int | float | bool | str]:
        """Values of the fields in :attr:`order`, as engineering values (bits as ``bool``,
        strings as ``str``).

        ``registers`` must hold exactly :attr:`count` registers (0..65535 each).
        """
        wire = self._wire.pack(*registers)
        swapped = _registers_struct(self.count, "<").pack(*registers) if self._need_swapped else b""
        values: list[int | float | bool | str] = []
        for use_swapped, layout in self._structs:
            values.extend(layout.unpack_from(swapped if use_swapped else wire))
        for pos, scale, offset in self._scaled:
            values[pos] = values[pos] * scale + offset  # type: ignore[operator]
        for pos, kind, bit, length in self._convert:
            raw = values[pos]
            if kind == "bit":
                values[pos] = bool((raw >> bit) & 1)  # type: ignore[operator]
            else:
                values[pos] = decode_string(raw, length)  # type: ignore[arg-type]
        return values


class BitDecoder:
    """Decodes the answer to a coil or discrete-input read (one bool per address).

    Same interface as :class:`BlockDecoder`: values come back in :attr:`order`.
    """

    __slots__ = ("count", "offsets", "order")

    def __init__(self, count: int, offsets: Sequence[int]) -> None:
        for offset in offsets:
            if not 0 <= offset < count:
                raise ValueError(f"bit at offset {offset} does not fit a block of {count}")
        self.count = count
        self.order: tuple[int, ...] = tuple(sorted(range(len(offsets)), key=offsets.__getitem__))
        self.offsets = tuple(offsets[i] for i in self.order)

    def decode(self, bits: Sequence[bool]) -> list[int | float | bool | str]:
        """Values in :attr:`order`; ``bits`` holds at least :attr:`count` bits (pymodbus
        pads the answer to a multiple of 8)."""
        return [bool(bits[o]) for o in self.offsets]
