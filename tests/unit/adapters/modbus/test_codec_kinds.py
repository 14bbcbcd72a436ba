"""Bits of registers, strings, coil blocks and 64-bit layouts in the block decoder."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus.codec import (
    BIT,
    ORDERS,
    TYPES,
    BitDecoder,
    BlockDecoder,
    Field,
    encode,
    encode_string,
    string_type,
)
from adapters.modbus.planner import Item, plan
from gateway.errors import WriteError


@pytest.mark.parametrize(
    ("order", "registers"),
    [
        ("ABCD", [0x0102, 0x0304, 0x0506, 0x0708]),
        ("CDAB", [0x0708, 0x0506, 0x0304, 0x0102]),
        ("BADC", [0x0201, 0x0403, 0x0605, 0x0807]),
        ("DCBA", [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_64_bit_layouts(order: str, registers: list[int]) -> None:
    assert encode(TYPES["uint64"], 0x0102030405060708, *ORDERS[order]) == registers
    (value,) = BlockDecoder(4, [Field(0, TYPES["uint64"], *ORDERS[order])]).decode(registers)
    assert value == 0x0102030405060708


def test_bits_of_a_register() -> None:
    fields = [Field(0, BIT, bit=b) for b in (0, 1, 15)] + [Field(1, BIT, "little", "big", bit=0)]
    decoder = BlockDecoder(2, fields)
    values = decoder.decode([0x8001, 0x0100])
    assert [values[decoder.order.index(i)] for i in range(4)] == [True, False, True, True]


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=9),
       st.sampled_from(["big", "little"]))
def test_strings_round_trip(text: str, byte_order: str) -> None:
    text = text.rstrip(" ")
    dtype = string_type(9)
    registers = encode_string(dtype, text, "t", byte_order)  # type: ignore[arg-type]
    assert len(registers) == 5
    (value,) = BlockDecoder(5, [Field(0, dtype, byte_order)]).decode(registers)  # type: ignore[arg-type]
    assert value == text


def test_string_encoding_and_errors() -> None:
    dtype = string_type(4)
    assert encode_string(dtype, "AB", "t") == [0x4142, 0]
    assert encode_string(dtype, "AB", "t", "little") == [0x4241, 0]
    with pytest.raises(WriteError, match="ASCII"):
        encode_string(dtype, "é", "t")
    with pytest.raises(WriteError, match="at most 4"):
        encode_string(dtype, "ABCDE", "t")
    with pytest.raises(WriteError, match="needs text"):
        encode_string(dtype, 5, "t")
    (value,) = BlockDecoder(2, [Field(0, dtype)]).decode([0x4142, 0x2020])
    assert value == "AB"


def test_bit_decoder() -> None:
    decoder = BitDecoder(10, [9, 0, 3])
    values = decoder.decode([True, False, False, True, False, False, False, False, False, True,
                             False, False, False, False, False, False])
    assert dict(zip(decoder.order, values, strict=True)) == {0: True, 1: True, 2: True}


def test_coil_blocks_are_at_most_2000_and_registers_at_most_125() -> None:
    coils = [Item(i, 1, "coils", i, 1) for i in range(5000)]
    blocks = plan(coils)
    assert [b.count for b in blocks] == [2000, 2000, 1000]
    assert len(plan(coils, max_bits=100)) == 50
    mixed = [*coils[:10], Item(10, 1, "holding", 0, 2), Item(11, 1, "discrete_inputs", 0, 1)]
    assert [(b.table, b.count) for b in plan(mixed)] == [
        ("coils", 10), ("discrete_inputs", 1), ("holding", 2)]


def test_max_registers_per_request_16() -> None:
    items = [Item(i, 1, "holding", 2 * i, 2) for i in range(100)]
    blocks = plan(items, max_registers=16)
    assert all(b.count <= 16 for b in blocks) and len(blocks) == 13  # 8 float32 each


def test_scattered_map_respects_max_gap() -> None:
    addresses = [0, 3, 10, 11, 30, 100, 104]
    items = [Item(i, 1, "holding", a, 1) for i, a in enumerate(addresses)]
    for gap in (0, 2, 6, 19, 70):
        for block in plan(items, max_gap=gap):
            inside = sorted(block.start + off for _, off in block.members)
            assert all(b - a - 1 <= gap for a, b in itertools.pairwise(inside))
    assert len(plan(items, max_gap=6)) == 3  # 0..11, 30, 100..104
