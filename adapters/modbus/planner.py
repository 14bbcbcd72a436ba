"""The read planner: which Modbus requests cover a set of tags with the fewest round trips.

Pure functions, run before any I/O (when the adapter is built, and once per new tag group).
Tags are grouped by ``(unit, table)``, sorted by address and coalesced greedily: a block
grows while its span stays within the table's limit (``max_registers`` for holding/input
registers, ``max_bits`` for coils/discrete inputs) and the hole before the next tag is at
most ``max_gap`` addresses (reading a few unused registers is cheaper than another round
trip, but only if the device allows reading them, hence ``max_gap`` defaults to 0).

Greedy coalescing is optimal here: a block is a run of consecutive tags in address order,
and any sub-run of a feasible run is feasible, so extending each block as far as possible
never needs more blocks than any other partition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BIT_TABLES", "MAX_BITS", "MAX_REGISTERS", "Block", "Item", "Table", "plan"]

Table = Literal["coils", "discrete_inputs", "input", "holding"]

BIT_TABLES: frozenset[str] = frozenset({"coils", "discrete_inputs"})
"""Tables of single bits (function codes 1 and 2); the others hold 16-bit registers."""

MAX_REGISTERS = 125
"""The protocol limit for one read of holding/input registers (function codes 3 and 4)."""
MAX_BITS = 2000
"""The protocol limit for one read of coils/discrete inputs (function codes 1 and 2)."""


@dataclass(frozen=True, slots=True)
class Item:
    """What the planner needs to know about one tag."""

    index: int
    """Position of the tag in the caller's sequence; returned in :attr:`Block.members`."""
    unit: int
    table: Table
    address: int
    registers: int
    """Width in addresses of the table: registers, or 1 for a coil/discrete input."""


@dataclass(frozen=True, slots=True)
class Block:
    """One read request and the tags it serves."""

    unit: int
    table: Table
    start: int
    count: int
    members: tuple[tuple[int, int], ...]
    """``(index, offset)`` per tag: the caller's index and the tag's first register
    relative to :attr:`start`, in address order."""


def plan(
    items: Iterable[Item],
    *,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    max_gap: int = 0,
) -> list[Block]:
    """The fewest blocks that read every item, ordered by ``(unit, table, start)``.

    Raises :class:`ValueError` when an item alone is wider than ``max_registers`` or leaves
    the 16-bit address space; config validation rejects both earlier with the field path.
    """
    if not 1 <= max_registers <= MAX_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_REGISTERS}, got {max_registers}")
    if not 1 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits must be 1..{MAX_BITS}, got {max_bits}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    ordered = sorted(items, key=lambda it: (it.unit, it.table, it.address, -it.registers))
    blocks: list[Block] = []
    current: list[Item] = []
    start = end = 0  # span of the open block: [start, end)

    def close() -> None:
        first = current[0]
        members = tuple((it.index, it.address - start) for it in current)
        blocks.append(Block(first.unit, first.table, start, end - start, members))

    for item in ordered:
        limit = max_bits if item.table in BIT_TABLES else max_registers
        if item.registers > limit:
            raise ValueError(
                f"a value of {item.registers} registers at address {item.address} cannot be "
                f"read with at most {limit} registers per request"
            )
        if item.address + item.registers > 65536:
            raise ValueError(f"{item.registers} registers at address {item.address} pass 65535")
        item_end = item.address + item.registers
        if current and (
            item.unit == current[0].unit
            and item.table == current[0].table
            and item.address - end <= max_gap
            and max(end, item_end) - start <= limit
        ):
            current.append(item)
            end = max(end, item_end)
            continue
        if current:
            close()
        current = [item]
        start, end = item.address, item_end
    if current:
        close()
    return blocks
