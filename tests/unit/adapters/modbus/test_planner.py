"""The read planner: fewest requests, limits honoured, every tag placed exactly once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.modbus.planner import Block, Item, Table, plan


def contiguous(count: int, width: int = 1, table: Table = "holding", unit: int = 1) -> list[Item]:
    return [Item(i, unit, table, i * width, width) for i in range(count)]


def test_1000_contiguous_holding_registers_take_8_requests() -> None:
    blocks = plan(contiguous(1000))
    assert len(blocks) == 8
    assert [(b.start, b.count) for b in blocks] == [(125 * i, 125) for i in range(8)]
    assert [m for b in blocks for m in b.members] == [
        (i, i - 125 * (i // 125)) for i in range(1000)
    ]


def test_a_value_never_straddles_two_requests() -> None:
    """62 float32 fit in 125 registers; the 63rd starts the next request."""
    blocks = plan(contiguous(100, width=2))
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 76)]


@pytest.mark.parametrize("limit", [1, 2, 10, 64, 125])
def test_max_registers_per_request_is_honoured(limit: int) -> None:
    blocks = plan(contiguous(300), max_registers=limit)
    assert all(b.count <= limit for b in blocks)
    assert len(blocks) == -(-300 // limit)


def test_gaps_split_blocks_unless_max_gap_allows_reading_through() -> None:
    items = [Item(0, 1, "holding", 0, 2), Item(1, 1, "holding", 5, 1), Item(2, 1, "holding", 10, 2)]
    assert [(b.start, b.count) for b in plan(items)] == [(0, 2), (5, 1), (10, 2)]
    assert [(b.start, b.count) for b in plan(items, max_gap=3)] == [(0, 6), (10, 2)]
    merged = plan(items, max_gap=4)
    assert [(b.start, b.count) for b in merged] == [(0, 12)]
    assert merged[0].members == ((0, 0), (1, 5), (2, 10))


def test_max_gap_never_exceeds_max_registers() -> None:
    items = [Item(0, 1, "holding", 0, 1), Item(1, 1, "holding", 100, 1)]
    assert len(plan(items, max_registers=100, max_gap=99)) == 2
    assert len(plan(items, max_registers=101, max_gap=99)) == 1


def test_tables_and_units_are_never_mixed() -> None:
    items = [
        Item(0, 1, "input", 0, 1),
        Item(1, 1, "holding", 1, 1),
        Item(2, 2, "holding", 2, 1),
        Item(3, 1, "holding", 0, 1),
        Item(4, 1, "input", 1, 2),
    ]
    blocks = plan(items, max_gap=10)
    assert [(b.unit, b.table, b.start, b.count) for b in blocks] == [
        (1, "holding", 0, 2),
        (1, "input", 0, 3),
        (2, "holding", 2, 1),
    ]
    assert blocks[0].members == ((3, 0), (1, 1))
    assert blocks[1].members == ((0, 0), (4, 1))


def test_unsorted_and_overlapping_tags_share_a_block() -> None:
    items = [
        Item(0, 1, "holding", 11, 1),
        Item(1, 1, "holding", 10, 2),
        Item(2, 1, "holding", 10, 1),
    ]
    (block,) = plan(items)
    assert (block.start, block.count) == (10, 2)
    assert sorted(block.members) == [(0, 1), (1, 0), (2, 0)]


def test_empty() -> None:
    assert plan([]) == []


def test_impossible_items_are_refused() -> None:
    with pytest.raises(ValueError, match="2 registers at address 7 cannot be read with at most 1"):
        plan([Item(0, 1, "holding", 7, 2)], max_registers=1)
    with pytest.raises(ValueError, match="pass 65535"):
        plan([Item(0, 1, "holding", 65535, 2)])
    with pytest.raises(ValueError, match=r"max_registers must be 1\.\.125"):
        plan([], max_registers=126)


items_strategy = st.lists(
    st.builds(
        lambda unit, table, address, width: (unit, table, address, width),
        st.integers(1, 2),
        st.sampled_from(["holding", "input"]),
        st.integers(0, 400),
        st.sampled_from([1, 2]),
    ),
    max_size=80,
)


@given(items_strategy, st.integers(2, 125), st.integers(0, 20))
def test_every_item_is_read_once_within_limits(
    raw: list[tuple[int, Table, int, int]], max_registers: int, max_gap: int
) -> None:
    items = [Item(i, u, t, a, w) for i, (u, t, a, w) in enumerate(raw)]
    blocks = plan(items, max_registers=max_registers, max_gap=max_gap)
    placed: dict[int, Block] = {}
    for block in blocks:
        assert 1 <= block.count <= max_registers
        for index, offset in block.members:
            item = items[index]
            assert index not in placed
            placed[index] = block
            assert (item.unit, item.table) == (block.unit, block.table)
            assert block.start + offset == item.address
            assert offset + item.registers <= block.count
    assert sorted(placed) == list(range(len(items)))
    assert len(blocks) == fewest_blocks(items, max_registers, max_gap)


def fewest_blocks(items: list[Item], max_registers: int, max_gap: int) -> int:
    """Reference: dynamic programming over every split of each (unit, table) group."""
    total = 0
    groups: dict[tuple[int, str], list[Item]] = {}
    for item in items:
        groups.setdefault((item.unit, item.table), []).append(item)
    for group in groups.values():
        group.sort(key=lambda it: (it.address, -it.registers))
        best = [0] + [len(group) + 1] * len(group)  # best[j]: fewest blocks for group[:j]
        for j in range(1, len(group) + 1):
            for i in range(j):
                run = group[i:j]
                start, end, feasible = run[0].address, run[0].address, True
                for it in run:
                    if it.address - end > max_gap and it is not run[0]:
                        feasible = False
                    end = max(end, it.address + it.registers)
                if feasible and end - start <= max_registers:
                    best[j] = min(best[j], best[i] + 1)
        total += best[-1]
    return total
