"""The register codec: every type in every byte/word order, single values and whole blocks."""

from __future__ import annotations

import math
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from adapters.modbus.codec import (
    ORDERS,
    TYPES,
    BlockDecoder,
    DataType,
    Field,
    decode,
    encode,
    to_engineering,
    to_raw,
)
from gateway.errors import WriteError

LAYOUTS = list(ORDERS.values())
TYPE_NAMES = list(TYPES)


def raw_values(dtype: DataType) -> st.SearchStrategy[int | float]:
    if dtype.kind == "float":
        return st.floats(width=32, allow_nan=False)
    return st.integers(int(dtype.minimum), int(dtype.maximum))


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x0102, 0x0304]),
        ("CDAB", [0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403]),
        ("DCBA", [0x0403, 0x0201]),
    ],
)
def test_known_layouts_of_a_32_bit_value(order: str, registers: list[int]) -> None:
    byte_order, word_order = ORDERS[order]
    assert encode(TYPES["uint32"], 0x01020304, byte_order, word_order) == registers
    assert decode(TYPES["uint32"], registers, byte_order, word_order) == 0x01020304


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x3F80, 0x0000]),
        ("CDAB", [0x0000, 0x3F80]),
        ("BADC", [0x803F, 0x0000]),
        ("DCBA", [0x0000, 0x803F]),
    ],
)
def test_known_layouts_of_float32_one(order: str, registers: list[int]) -> None:
    assert decode(TYPES["float32"], registers, *ORDERS[order]) == 1.0


@pytest.mark.parametrize(("byte_order", "word_order"), LAYOUTS)
def test_16_bit_values_ignore_word_order(byte_order: str, word_order: str) -> None:
    expected = [0x1234] if byte_order == "big" else [0x3412]
    assert encode(TYPES["uint16"], 0x1234, byte_order, word_order) == expected  # type: ignore[arg-type]
    assert decode(TYPES["int16"], [0xFFFE], "big", word_order) == -2  # type: ignore[arg-type]


@pytest.mark.parametrize("type_name", TYPE_NAMES)
@pytest.mark.parametrize(("byte_order", "word_order"), LAYOUTS)
@given(data=st.data())
def test_round_trip(type_name: str, byte_order: str, word_order: str, data: st.DataObject) -> None:
    dtype = TYPES[type_name]
    raw = data.draw(raw_values(dtype))
    registers = encode(dtype, raw, byte_order, word_order)  # type: ignore[arg-type]
    assert len(registers) == dtype.registers
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(dtype, registers, byte_order, word_order) == raw  # type: ignore[arg-type]


@pytest.mark.parametrize("type_name", TYPE_NAMES)
@pytest.mark.parametrize("word_order", ["big", "little"])
@given(data=st.data())
def test_agrees_with_pymodbus(type_name: str, word_order: str, data: st.DataObject) -> None:
    """pymodbus' own converter (big-endian bytes) is an independent reference."""
    dtype = TYPES[type_name]
    raw = data.draw(raw_values(dtype))
    datatype = getattr(AsyncModbusTcpClient.DATATYPE, type_name.upper())
    reference = AsyncModbusTcpClient.convert_to_registers(raw, datatype, word_order=word_order)  # type: ignore[arg-type]
    assert encode(dtype, raw, "big", word_order) == reference  # type: ignore[arg-type]


@pytest.mark.parametrize("type_name", TYPE_NAMES)
@pytest.mark.parametrize(("byte_order", "word_order"), LAYOUTS)
def test_extremes(type_name: str, byte_order: str, word_order: str) -> None:
    dtype = TYPES[type_name]
    extremes: list[int | float] = [dtype.minimum, dtype.maximum, 0]
    if dtype.kind == "int":
        extremes = [int(v) for v in extremes]
    else:
        extremes += [-0.0, 1.401298464324817e-45, math.inf, -math.inf]
    for raw in extremes:
        regs = encode(dtype, raw, byte_order, word_order)  # type: ignore[arg-type]
        back = decode(dtype, regs, byte_order, word_order)  # type: ignore[arg-type]
        assert back == raw and math.copysign(1, back) == math.copysign(1, raw)


def test_float32_nan_decodes_to_nan() -> None:
    assert math.isnan(decode(TYPES["float32"], [0x7FC0, 0x0000]))


def test_decode_needs_exact_width() -> None:
    with pytest.raises(ValueError, match="float32 needs 2 registers, got 1"):
        decode(TYPES["float32"], [1])


# -- blocks -----------------------------------------------------------------------------


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[Field], list[int | float], list[int]]:
    """Non-overlapping fields of random type/layout with gaps, their values, the registers."""
    fields: list[Field] = []
    values: list[int | float] = []
    registers: list[int] = []
    for _ in range(draw(st.integers(1, 20))):
        registers.extend(draw(st.lists(st.integers(0, 0xFFFF), max_size=3)))  # a gap
        dtype = TYPES[draw(st.sampled_from(TYPE_NAMES))]
        byte_order, word_order = draw(st.sampled_from(LAYOUTS))
        raw = draw(raw_values(dtype))
        fields.append(Field(len(registers), dtype, byte_order, word_order))
        values.append(raw)
        registers.extend(encode(dtype, raw, byte_order, word_order))
    return fields, values, registers


@given(blocks())
def test_block_decoder_matches_single_value_decoding(
    case: tuple[list[Field], list[int | float], list[int]],
) -> None:
    fields, values, registers = case
    decoder = BlockDecoder(len(registers), fields)
    decoded = decoder.decode(registers)
    assert sorted(decoder.order) == list(range(len(fields)))
    assert [values[i] for i in decoder.order] == decoded


def test_block_decoder_uses_one_layout_per_distinct_order() -> None:
    fields = [Field(2 * i, TYPES["float32"]) for i in range(62)]
    decoder = BlockDecoder(124, fields)
    registers = [r for i in range(62) for r in encode(TYPES["float32"], float(i))]
    assert decoder.decode(registers) == [float(i) for i in range(62)]
    assert decoder.order == tuple(range(62))
    assert len(decoder._structs) == 1


def test_block_decoder_handles_overlapping_fields() -> None:
    """The same registers read as one uint32 and as two uint16 (e.g. a status word)."""
    fields = [
        Field(0, TYPES["uint32"]),
        Field(0, TYPES["uint16"]),
        Field(1, TYPES["uint16"]),
        Field(1, TYPES["int16"], "little", "big"),
    ]
    decoded = BlockDecoder(2, fields).decode([0x0102, 0xFF00])
    by_field = dict(zip(BlockDecoder(2, fields).order, decoded, strict=True))
    assert by_field == {0: 0x0102FF00, 1: 0x0102, 2: 0xFF00, 3: 0x00FF}


def test_block_decoder_applies_scale_and_offset() -> None:
    fields = [
        Field(0, TYPES["uint16"], scale=0.1),
        Field(1, TYPES["int16"], scale=1.0, value_offset=-40.0),
        Field(2, TYPES["uint16"]),
    ]
    decoded = BlockDecoder(3, fields).decode([1234, 0xFFFF, 7])
    assert decoded == [pytest.approx(123.4), -41.0, 7]
    assert type(decoded[2]) is int and type(decoded[1]) is float


def test_block_decoder_refuses_fields_outside_the_block() -> None:
    with pytest.raises(ValueError, match="float32 at offset 1 does not fit a block of 2"):
        BlockDecoder(2, [Field(1, TYPES["float32"])])


# -- engineering values -----------------------------------------------------------------


def test_to_engineering_keeps_ints_without_scaling() -> None:
    assert to_engineering(TYPES["uint16"], 5, 1.0, 0.0) == 5
    assert type(to_engineering(TYPES["uint16"], 5, 1.0, 0.0)) is int
    assert to_engineering(TYPES["uint16"], 5, 0.5, 1.0) == 3.5


@pytest.mark.parametrize(
    ("type_name", "value", "scale", "offset", "raw"),
    [
        ("uint16", 1500, 1.0, 0.0, 1500),
        ("uint16", 1500.4, 1.0, 0.0, 1500),
        ("uint16", 12.34, 0.01, 0.0, 1234),
        ("int16", -40.0, 0.1, -40.0, 0),
        ("int16", 2.5, 1.0, 0.0, 2),  # half to even
        ("uint32", 4294967295, 1.0, 0.0, 4294967295),
        ("float32", 1, 1.0, 0.0, 1.0),
        ("float32", 10.0, 2.0, 4.0, 3.0),
    ],
)
def test_to_raw(
    type_name: str, value: float, scale: float, offset: float, raw: int | float
) -> None:
    result = to_raw(TYPES[type_name], value, scale, offset, "t")
    assert result == raw
    assert type(result) is type(raw)


@pytest.mark.parametrize(
    ("type_name", "value", "scale", "message"),
    [
        (
            "uint16",
            65536,
            1.0,
            "value 65536 for tag 't' is out of range for uint16: allowed 0..65535",
        ),
        ("uint16", -1, 1.0, "out of range for uint16: allowed 0..65535"),
        ("int16", 32767.5, 1.0, "out of range for int16: allowed -32768..32767"),
        ("int32", 2**31, 1.0, "out of range for int32"),
        (
            "uint16",
            700.0,
            0.01,
            "allowed 0..655.35 (raw 70000 after scale 0.01, offset 0)",
        ),
        ("float32", 1e39, 1.0, "out of range for float32"),
        ("uint16", True, 1.0, "tag 't' (uint16) needs a number, got bool True"),
        ("float32", "12", 1.0, "needs a number, got str '12'"),
        ("float32", math.nan, 1.0, "needs a finite number, got nan"),
        ("int32", math.inf, 1.0, "needs a finite number, got inf"),
    ],
)
def test_to_raw_refuses(type_name: str, value: object, scale: float, message: str) -> None:
    with pytest.raises(WriteError, match=re.escape(message)):
        to_raw(TYPES[type_name], value, scale, 0.0, "t")


def test_float32_limit_is_the_largest_finite_float32() -> None:
    assert TYPES["float32"].maximum == struct.unpack(">f", struct.pack(">I", 0x7F7FFFFF))[0]
