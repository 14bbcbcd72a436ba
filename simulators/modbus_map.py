"""Declarative Modbus register maps for the simulator: entries, value sources, YAML/CSV files.

A map is a sequence of :class:`MapEntry`: where a value lives (table, 0-based protocol
address, type, byte/word order), how it is scaled (``raw * scale + offset`` is the
engineering value, as in the adapter) and where its value comes from (:class:`Source`):

=========================  ===============================================================
``value`` (source spec)    the served value
=========================  ===============================================================
*(empty)*                  the plant signal named like the entry (:data:`~simulators.plant.SIGNALS`)
``plant:NAME``             the plant signal ``NAME``
``const:V`` or ``V``       the constant ``V``; a writable entry keeps what is written
``ramp:LO:HI:PERIOD``      a sawtooth from LO to HI every PERIOD seconds of plant time
``sine:LO:HI:PERIOD``      a sine between LO and HI with that period
``random:LO:HI``           a new uniform random value per read (seeded by the plant's seed)
``counter:START``          START on the first read, then one more on every further read
=========================  ===============================================================

``counter`` counts the requests that read the entry (per unit, from when the simulator was
built): a poller that stores every reading of it must store strictly increasing values, one
apart, so lost and duplicated readings show in the data itself (the store-and-forward
tests use it). A request that reads several entries counts once for each counter among
them; in a bit table every request of the table reads every entry, so a counter belongs in a
register table.

A bool entry (coils, discrete inputs) is true when its source's value is ≥ 0.5 (so
``ramp:0:1:10`` is false for 5 s, then true for 5 s). Writable entries must be backed by a
writable plant signal (setpoints, run flags) or a constant.

Files (:func:`load_map`) use the adapter's tag columns, so one CSV can describe both sides:
``name, table, address, type, order | byte_order + word_order, scale, offset, unit``, plus
the simulator's own ``value`` (the source spec) and ``writable`` (true/false; default: true
for entries in coils/holding backed by a writable plant signal or a constant). ``unit_id``
restricts an entry to one unit id. ``interval``, ``description`` and ``enum`` only matter to
the poller and are ignored; any other column is an error. A YAML file holds a list of such
rows, or a mapping with a ``tags:`` list (the shape of a device's ``tags``). Addresses are
0-based protocol addresses only (no 4xxxx notation). Tables: ``coils``, ``discrete_inputs``,
``holding``, ``input`` (``coil``, ``discrete`` and ``discrete_input`` are accepted too).
"""

from __future__ import annotations

import csv
import math
import random
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from simulators.plant import SIGNALS, Plant

__all__ = [
    "BIT_TABLES",
    "TABLES",
    "MapEntry",
    "MapError",
    "Order",
    "Source",
    "Table",
    "TypeName",
    "decode",
    "encode",
    "load_map",
    "normalise_table",
    "parse_rows",
]

Table = Literal["coils", "discrete_inputs", "holding", "input"]
TypeName = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"
]
Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
TABLES: tuple[Table, ...] = get_args(Table)
BIT_TABLES: tuple[Table, ...] = ("coils", "discrete_inputs")
_TABLE_ALIASES: dict[str, Table] = {
    **{t: t for t in TABLES},
    "coil": "coils",
    "discrete": "discrete_inputs",
    "discrete_input": "discrete_inputs",
}
_FORMATS: dict[str, tuple[str, int]] = {
    "int16": ("h", 1), "uint16": ("H", 1), "int32": ("i", 2), "uint32": ("I", 2),
    "int64": ("q", 4), "uint64": ("Q", 4), "float32": ("f", 2), "float64": ("d", 4),
}
_ORDERS: dict[str, tuple[bool, bool]] = {  # (swap bytes in each register, reverse registers)
    "ABCD": (False, False), "CDAB": (False, True), "BADC": (True, False), "DCBA": (True, True),
}
_BYTE_WORD: dict[tuple[str, str], Order] = {
    ("big", "big"): "ABCD", ("big", "little"): "CDAB",
    ("little", "big"): "BADC", ("little", "little"): "DCBA",
}


class MapError(ValueError):
    """A register map that cannot be served; the message names the file, line and field."""


def normalise_table(name: str) -> Table:
    """The canonical table name of ``name`` (accepting the singular aliases); raises
    :class:`ValueError` for an unknown table."""
    try:
        return _TABLE_ALIASES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}") from None


@dataclass(frozen=True, slots=True)
class Source:
    """Where an entry's value comes from; build it with :meth:`parse`."""

    kind: Literal["plant", "const", "ramp", "sine", "random", "counter"]
    signal: str = ""
    args: tuple[float, ...] = ()

    @classmethod
    def parse(cls, spec: str | float | None, name: str) -> Source:
        """Parse a source spec (see the module docstring); ``None``/empty means the plant
        signal ``name``. Raises :class:`ValueError` naming what is wrong."""
        if spec is None or (isinstance(spec, str) and not spec.strip()):
            return cls._plant(name)
        if isinstance(spec, bool | int | float):
            return cls("const", args=(float(spec),))
        kind, _, rest = spec.strip().partition(":")
        kind = kind.lower()
        if not rest:
            try:
                return cls("const", args=(_number(kind),))
            except ValueError:
                raise ValueError(
                    f"value {spec!r} is neither a number nor "
                    "plant:/const:/ramp:/sine:/random:/counter:"
                ) from None
        if kind == "plant":
            return cls._plant(rest.strip())
        arity = {"const": 1, "ramp": 3, "sine": 3, "random": 2, "counter": 1}.get(kind)
        if arity is None:
            raise ValueError(
                f"unknown value source {kind!r} (plant, const, ramp, sine, random, counter)"
            )
        parts = rest.split(":")
        if len(parts) != arity:
            shape = {1: f"{kind}:V", 2: f"{kind}:LO:HI", 3: f"{kind}:LO:HI:PERIOD"}[arity]
            raise ValueError(f"value {spec!r}: expected {shape}")
        args = tuple(_number(p) for p in parts)
        if arity == 3 and args[2] <= 0:
            raise ValueError(f"value {spec!r}: the period must be > 0 s")
        if kind == "counter" and args[0] != int(args[0]):
            raise ValueError(f"value {spec!r}: a counter starts at a whole number")
        return cls(kind, args=args)  # type: ignore[arg-type]

    @classmethod
    def _plant(cls, signal: str) -> Source:
        if signal not in SIGNALS:
            raise ValueError(
                f"{signal!r} is not a plant signal (known: {', '.join(SIGNALS)}); "
                "give a value source such as const:0"
            )
        return cls("plant", signal=signal)

    @property
    def writable(self) -> bool:
        """Whether an entry with this source may accept writes."""
        return self.kind == "const" or (self.kind == "plant" and SIGNALS[self.signal].writable)

    def __str__(self) -> str:
        if self.kind == "plant":
            return f"plant:{self.signal}"
        return ":".join([self.kind, *(f"{a:g}" for a in self.args)])


def _number(text: str) -> float:
    text = text.strip().lower()
    if text in ("true", "on", "yes"):
        return 1.0
    if text in ("false", "off", "no"):
        return 0.0
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


@dataclass(frozen=True, slots=True)
class MapEntry:
    """Where one value lives in the register map and where its value comes from.

    ``source`` is a source spec string (module docstring); ``None`` serves the plant signal
    called ``name``. ``unit_id`` (``None``: every unit) restricts the entry to one unit id.
    Construction validates everything and raises :class:`ValueError`.
    """

    name: str
    table: Table
    address: int
    type: TypeName
    scale: float = 1.0
    unit: str | None = None
    order: Order = "ABCD"
    writable: bool = False
    offset: float = 0.0
    source: str | None = None
    unit_id: int | None = None
    value_source: Source = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: must not be empty")
        if self.table not in TABLES:
            raise ValueError(f"table: unknown table {self.table!r}; known: {', '.join(TABLES)}")
        if self.type != "bool" and self.type not in _FORMATS:
            raise ValueError(f"type: unknown type {self.type!r}")
        bits = self.table in BIT_TABLES
        if bits != (self.type == "bool"):
            raise ValueError(
                f"type: {self.type} does not fit table {self.table} (bool is for coils and "
                "discrete_inputs, which hold nothing else)"
            )
        if self.order not in _ORDERS:
            raise ValueError(f"order: unknown order {self.order!r}; known: {', '.join(_ORDERS)}")
        if not 0 <= self.address <= 65536 - self.registers:
            raise ValueError(
                f"address: {self.address} does not fit 0..65535 with {self.registers} "
                "register(s)"
            )
        if self.scale == 0 or not math.isfinite(self.scale) or not math.isfinite(self.offset):
            raise ValueError("scale/offset: scale must be a non-zero finite number")
        if self.unit_id is not None and not 0 <= self.unit_id <= 255:
            raise ValueError(f"unit_id: must be 0..255, got {self.unit_id}")
        try:
            source = Source.parse(self.source, self.name)
        except ValueError as exc:
            raise ValueError(f"value: {exc}") from None
        if self.writable:
            if self.table not in ("coils", "holding"):
                raise ValueError(f"writable: the {self.table} table is read-only")
            if not source.writable:
                raise ValueError(f"writable: the value source {source} cannot take writes")
        object.__setattr__(self, "value_source", source)

    @property
    def registers(self) -> int:
        """Registers (or bits, for bool) the value occupies."""
        return 1 if self.type == "bool" else _FORMATS[self.type][1]

    @property
    def end(self) -> int:
        """First address after the value."""
        return self.address + self.registers


def encode(entry: MapEntry, value: float) -> tuple[int, ...]:
    """Raw registers of one engineering value (``raw = (value - offset) / scale``); integers
    round and saturate at their type's range like a real PLC does. Pure."""
    fmt, count = _FORMATS[entry.type]
    raw: float = (value - entry.offset) / entry.scale
    if fmt not in "fd":
        bits = 8 * struct.calcsize(fmt)
        if fmt.isupper():
            lo, hi = 0, (1 << bits) - 1
        else:
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        raw = min(hi, max(lo, round(raw))) if math.isfinite(raw) else 0
    data = struct.pack(">" + fmt, raw)
    swap, reverse = _ORDERS[entry.order]
    if swap:
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    regs: tuple[int, ...] = struct.unpack(f">{count}H", data)
    return regs[::-1] if reverse else regs


def decode(entry: MapEntry, registers: Sequence[int]) -> float:
    """The engineering value of raw registers laid out as ``entry`` says. Pure."""
    fmt, count = _FORMATS[entry.type]
    swap, reverse = _ORDERS[entry.order]
    regs = list(registers[:count])
    if reverse:
        regs.reverse()
    data = struct.pack(f">{count}H", *regs)
    if swap:
        data = bytes(b for i in range(0, len(data), 2) for b in (data[i + 1], data[i]))
    raw: float = struct.unpack(">" + fmt, data)[0]
    return raw * entry.scale + entry.offset


class Generator:
    """Evaluates the sources of one map against a plant (and per-unit constants)."""

    def __init__(self, plant: Plant) -> None:
        self.plant = plant
        self._random: dict[str, random.Random] = {}
        self._reads: dict[str, int] = {}

    def value(
        self, entry: MapEntry, sample: Mapping[str, float | int], consts: Mapping[str, float]
    ) -> float:
        """The current engineering value of ``entry``; ``sample`` is a plant sample (only
        read for plant sources), ``consts`` the unit's stored constants by entry name."""
        src = entry.value_source
        if src.kind == "plant":
            return float(sample[src.signal])
        if src.kind == "const":
            return consts.get(entry.name, src.args[0])
        if src.kind == "random":
            rng = self._random.get(entry.name)
            if rng is None:
                rng = self._random[entry.name] = random.Random(f"{self.plant.seed}/{entry.name}")
            return rng.uniform(src.args[0], src.args[1])
        if src.kind == "counter":
            # Called once per request that reads the entry: the count is the read count.
            reads = self._reads[entry.name] = self._reads.get(entry.name, -1) + 1
            return src.args[0] + reads
        lo, hi, period = src.args
        phase = (self.plant.now / period) % 1.0
        if src.kind == "ramp":
            return lo + (hi - lo) * phase
        return lo + (hi - lo) * (0.5 + 0.5 * math.sin(2 * math.pi * phase))


# -- files ---------------------------------------------------------------------------------

_COLUMNS = (
    "name", "table", "address", "type", "order", "byte_order", "word_order", "scale",
    "offset", "unit", "value", "writable", "unit_id",
)
_IGNORED = ("interval", "description", "enum")


def load_map(path: str | Path) -> tuple[MapEntry, ...]:
    """Load a register map from ``.yaml``/``.yml`` or ``.csv`` (module docstring). Raises
    :class:`MapError` naming the file, line (CSV) or row and field of every problem, or
    :class:`OSError` when the file cannot be read."""
    file = Path(path)
    text = file.read_text(encoding="utf-8-sig")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        return _parse_csv(text, str(file))
    if suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise MapError(f"{file}: not valid YAML: {exc}") from exc
        if isinstance(data, Mapping):
            extra = set(data) - {"tags"}
            if extra or "tags" not in data:
                raise MapError(f"{file}: expected a list of tags or a mapping with only 'tags'")
            data = data["tags"]
        if not isinstance(data, list):
            raise MapError(f"{file}: expected a list of tags")
        rows: list[tuple[str, Mapping[str, Any]]] = []
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise MapError(f"{file}: tags[{i}]: expected a mapping")
            rows.append((f"{file}: tags[{i}]", row))
        return parse_rows(rows)
    raise MapError(f"{file}: unknown map format {suffix!r}; use .yaml, .yml or .csv")


def _parse_csv(text: str, file: str) -> tuple[MapEntry, ...]:
    lines = text.splitlines()
    reader = csv.reader(lines)
    header: list[str] | None = None
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            unknown = [h for h in header if h not in _COLUMNS and h not in _IGNORED]
            if unknown:
                raise MapError(
                    f"{file}:{line}: unknown column(s) {', '.join(map(repr, unknown))} "
                    f"(known: {', '.join(_COLUMNS)}; ignored: {', '.join(_IGNORED)})"
                )
            continue
        if len(row) > len(header):
            raise MapError(f"{file}:{line}: {len(row)} cells but the header has {len(header)}")
        cells = {h: c.strip() for h, c in zip(header, row, strict=False) if c.strip()}
        rows.append((f"{file}:{line}", cells))
    if header is None:
        raise MapError(f"{file}: empty; expected a header row (name, table, address, type, ...)")
    return parse_rows(rows)


def parse_rows(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[MapEntry, ...]:
    """Build and cross-check entries from ``(location, row)`` pairs, where a row maps
    column names to values (strings from CSV, typed values from YAML). Raises
    :class:`MapError` prefixed with the row's location; checks names are unique and
    entries of one table and unit do not overlap."""
    entries: list[tuple[str, MapEntry]] = []
    for where, row in rows:
        try:
            entries.append((where, _entry(row)))
        except ValueError as exc:
            raise MapError(f"{where}: {exc}") from None
    _check_layout(entries)
    return tuple(e for _, e in entries)


def _entry(row: Mapping[str, Any]) -> MapEntry:
    unknown = [k for k in row if k not in _COLUMNS and k not in _IGNORED]
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
    for required in ("name", "table", "address"):
        if row.get(required) in (None, ""):
            raise ValueError(f"{required}: required")
    table = normalise_table(str(row["table"]))
    address = _int(row["address"], "address")
    type_name = str(row.get("type") or ("bool" if table in BIT_TABLES else ""))
    if not type_name:
        raise ValueError("type: required for register tables")
    order = row.get("order")
    byte_order, word_order = row.get("byte_order"), row.get("word_order")
    if byte_order is not None or word_order is not None:
        pair = (str(byte_order or "big").lower(), str(word_order or "big").lower())
        if pair not in _BYTE_WORD:
            raise ValueError(f"byte_order/word_order: expected big or little, got {pair}")
        if order is not None and _BYTE_WORD[pair] != order:
            raise ValueError(f"order: {order} contradicts byte_order/word_order {pair}")
        order = _BYTE_WORD[pair]
    source = row.get("value")
    source_spec = None if source is None else source if isinstance(source, str) else str(source)
    try:
        probe = Source.parse(source_spec, str(row["name"]))
    except ValueError as exc:
        raise ValueError(f"value: {exc}") from None
    writable = row.get("writable")
    if writable is None:
        is_writable = table in ("coils", "holding") and probe.writable
    elif isinstance(writable, bool):
        is_writable = writable
    else:
        is_writable = bool(_number(str(writable)))
    return MapEntry(
        name=str(row["name"]),
        table=table,
        address=address,
        type=type_name,  # type: ignore[arg-type]
        scale=_float(row.get("scale"), "scale", 1.0),
        unit=None if row.get("unit") in (None, "") else str(row["unit"]),
        order=str(order or "ABCD").upper(),  # type: ignore[arg-type]
        writable=is_writable,
        offset=_float(row.get("offset"), "offset", 0.0),
        source=source_spec,
        unit_id=None if row.get("unit_id") in (None, "") else _int(row["unit_id"], "unit_id"),
    )


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(str(value).strip(), 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None


def _float(value: Any, name: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None


def _check_layout(entries: Sequence[tuple[str, MapEntry]]) -> None:
    names: dict[str, str] = {}
    for where, entry in entries:
        if entry.name in names:
            raise MapError(f"{where}: name {entry.name!r} is already used at {names[entry.name]}")
        names[entry.name] = where
    units: set[int | None] = {e.unit_id for _, e in entries if e.unit_id is not None} or {None}
    for unit in units:
        spans = sorted(
            (e.table, e.address, e.end, where, e)
            for where, e in entries
            if e.unit_id is None or e.unit_id == unit
        )
        last: tuple[str, int, str, MapEntry] | None = None  # table, end, where, entry
        for table, start, end, where, entry in spans:
            if last is not None and last[0] == table and start < last[1]:
                raise MapError(
                    f"{where}: {entry.name!r} at {table} {start} overlaps {last[3].name!r} "
                    f"({last[2]})"
                )
            if last is None or last[0] != table or end > last[1]:
                last = (table, end, where, entry)
