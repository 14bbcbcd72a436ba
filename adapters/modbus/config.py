"""Configuration models of the Modbus adapter (``type: modbus``).

These models are the single source of the JSON Schema shown to integrators, so every field
carries a description. Validation is strict (unknown keys are errors) and cross-field rules
raise errors located at the offending field where pydantic allows it.

Two conveniences are resolved while the device is validated, before any tag model is
built: ``tags_csv`` (a register map in a CSV file, appended to ``tags``) and
``addressing: modicon`` (``"40001"``-style numbers turned into 0-based protocol addresses).
Errors in either name the tag path (``tags[3].address``) or, for CSV, ``file:line:column``.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from adapters.base import DeviceConfig, TagConfig
from adapters.modbus.codec import BIT, ORDERS, TYPES, ByteOrder, DataType, WordOrder, string_type
from adapters.modbus.planner import BIT_TABLES, MAX_BITS, MAX_REGISTERS, Table
from gateway.config_types import Duration, parse_duration

__all__ = [
    "MODICON_PREFIX",
    "ModbusDeviceConfig",
    "ModbusTagConfig",
    "Order",
    "parse_modicon",
]

Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
DataTypeName = Literal[
    "bool", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64",
    "string",
]
Transport = Literal["tcp", "rtu", "rtu-over-tcp"]
Addressing = Literal["zero-based", "modicon"]

MODICON_PREFIX: dict[str, Table] = {
    "0": "coils", "1": "discrete_inputs", "3": "input", "4": "holding",
}
"""First digit of a Modicon reference number and the table it names."""

_ORDER_HELP = (
    "Shorthand for byte_order + word_order, naming the bytes as sent, A the most "
    "significant: ABCD = big/big, CDAB = word-swapped (big bytes, little words), "
    "BADC = byte-swapped (little bytes, big words), DCBA = little/little; for 64-bit types "
    "the same rule applies to all four registers (CDAB means the last register is sent first)"
)

_ADDRESS_HELP = (
    "Address of the first register/coil. With the device's `addressing: zero-based` "
    "(default) the 0-based protocol address as sent on the wire (0..65535); with "
    "`addressing: modicon` the conventional 1-based reference: 5 or 6 digits whose first "
    "digit names the table (0xxxx coils, 1xxxx discrete inputs, 3xxxx input registers, "
    "4xxxx holding registers; 40001 and 400001 are holding address 0), or a plain 1-based "
    "number within the tag's table. Quote references with leading zeros (\"00017\"): YAML "
    "reads 00017 as an octal number"
)

# A 0-based address after resolution; the schema also admits the strings users may write.
Address = Annotated[
    int,
    WithJsonSchema({
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 465536},
            {"type": "string", "pattern": r"^\s*\d{1,6}\s*$"},
        ],
        "description": _ADDRESS_HELP,
    }),
]


def _seconds_or_zero(value: Any) -> Any:
    if value == 0 or value == "0":
        return 0.0
    return parse_duration(value)


DelaySeconds = Annotated[
    float,
    BeforeValidator(_seconds_or_zero),
    Field(ge=0, le=10),
    WithJsonSchema({
        "anyOf": [
            {"type": "number", "minimum": 0, "maximum": 10},
            {"type": "string", "pattern": r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$"},
        ],
        "description": "Seconds, or a number with a unit: ms, s; 0 for none",
    }),
]


def parse_modicon(value: int | str, table: str | None) -> tuple[Table, int]:
    """``(table, 0-based address)`` of a Modicon reference such as ``"40001"``.

    Five or six digits name the table by their first digit (``0``/``1``/``3``/``4``) and
    the 1-based number by the rest; shorter numbers are 1-based within ``table``. Raises
    :class:`ValueError` with the reason (unknown prefix, number 0, table mismatch...).
    """
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError(f"expected a Modicon reference such as 40001, got {value!r}")
    if len(text) in (5, 6):
        prefix, number = text[0], int(text[1:])
        named = MODICON_PREFIX.get(prefix)
        if named is None:
            raise ValueError(
                f"reference {text} starts with {prefix}; Modicon references start with 0 "
                "(coils), 1 (discrete inputs), 3 (input registers) or 4 (holding registers)"
            )
        if table is not None and table != named:
            raise ValueError(f"reference {text} is in the {named} table, but the tag says {table}")
        limit = 9999 if len(text) == 5 else 65536
        if not 1 <= number <= limit:
            raise ValueError(f"reference {text}: the number after the prefix must be 1..{limit}")
        return named, number - 1
    if len(text) > 6:
        raise ValueError(f"reference {text} has more than 6 digits")
    if table is None:
        raise ValueError(
            f"{text} is not a 5- or 6-digit reference (such as 40001), so the tag needs a table"
        )
    number = int(text)
    if number < 1:
        raise ValueError("Modicon numbers are 1-based; 0 is not a register number")
    return table, number - 1  # type: ignore[return-value]


def _check_order(
    order: Order | None, byte_order: ByteOrder | None, word_order: WordOrder | None
) -> None:
    """Refuse ``order`` together with a ``byte_order``/``word_order`` that contradicts it."""
    if order is None:
        return
    implied_byte, implied_word = ORDERS[order]
    conflicts = [
        f"{name}={given!r}"
        for name, given, implied in (
            ("byte_order", byte_order, implied_byte),
            ("word_order", word_order, implied_word),
        )
        if given is not None and given != implied
    ]
    if conflicts:
        raise ValueError(
            f"order={order!r} means byte_order={implied_byte!r}, word_order={implied_word!r}; "
            f"it contradicts {' and '.join(conflicts)} (give one or the other)"
        )


class ModbusTagConfig(TagConfig):
    """One value in a Modbus device: a table, an address and a data type.

    The engineering value is ``raw * scale + offset``. Integer types without scaling are
    reported as integers, floats as floats, bits as booleans, strings as text and enum
    tags as their label. Byte/word order default to the device's.
    """

    table: Table = Field(
        description="coils (function code 1, writable bits), discrete_inputs (2, read-only "
        "bits), holding (3, writable registers) or input (4, read-only registers)"
    )
    type: DataTypeName = Field(
        description="Data type: bool (a coil/discrete input, or with `bit` one bit of a "
        "register), 16/32/64-bit integers and floats (2 registers for 32-bit, 4 for 64-bit), "
        "string (ASCII, `length` characters, two per register). Default: bool for coils and "
        "discrete inputs; required for registers"
    )
    unit_id: int | None = Field(
        default=None,
        ge=0,
        le=255,
        description="Modbus unit id (slave id) of this tag, for several devices behind one "
        "connection (a serial line or gateway); default: the device's `unit`",
    )
    bit: int | None = Field(
        default=None,
        ge=0,
        le=15,
        description="For type bool in a register table: the bit (0 = least significant) of "
        "the register's value",
    )
    length: int | None = Field(
        default=None,
        ge=1,
        le=2 * MAX_REGISTERS,
        description="For type string: length in characters (bytes); the string occupies "
        "ceil(length / 2) registers. Read values stop at the first NUL and lose trailing "
        "spaces; written values are padded with NUL",
    )
    address: Address = Field(ge=0, le=65535, description=_ADDRESS_HELP)
    byte_order: ByteOrder | None = Field(
        default=None, description="Byte order inside each register; default: the device's"
    )
    word_order: WordOrder | None = Field(
        default=None,
        description="Order of the registers of 32/64-bit values; default: the device's",
    )
    order: Order | None = Field(default=None, description=_ORDER_HELP)
    scale: float = Field(
        default=1.0, description="Multiplier from raw to engineering value; not 0"
    )
    offset: float = Field(default=0.0, description="Added after scaling")
    enum: dict[int, str] | None = Field(
        default=None,
        description="Labels of raw values of an integer or bool tag, e.g. {0: stopped, "
        "1: running}; readings report the label (a raw value without a label is reported "
        "as the number with uncertain quality) and writes accept the label",
    )

    @model_validator(mode="before")
    @classmethod
    def _bits_default_to_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" not in data and data.get("table") in BIT_TABLES:
            return {**data, "type": "bool"}
        return data

    @field_validator("address")
    @classmethod
    def _fits_address_space(cls, address: int, info: ValidationInfo) -> int:
        type_name, table = info.data.get("type"), info.data.get("table")
        if type_name is None or table is None or table in BIT_TABLES:
            return address  # a failed type/table is reported instead; bits are 1 wide
        if type_name == "string":
            width = ((info.data.get("length") or 1) + 1) // 2
        elif type_name == "bool":
            width = 1
        else:
            width = TYPES[type_name].registers
        if address + width > 65536:
            raise ValueError(
                f"a {type_name} needs {width} registers, so its address can be at most "
                f"{65536 - width}, got {address}"
            )
        return address

    @field_validator("scale")
    @classmethod
    def _usable_scale(cls, scale: float) -> float:
        # A write divides by the scale, and inf/nan would turn every value into garbage.
        if scale == 0 or not math.isfinite(scale):
            raise ValueError(f"scale must be a finite number other than 0, got {scale}")
        return scale

    @field_validator("offset")
    @classmethod
    def _finite_offset(cls, offset: float) -> float:
        if not math.isfinite(offset):
            raise ValueError(f"offset must be a finite number, got {offset}")
        return offset

    @field_validator("enum")
    @classmethod
    def _unique_labels(cls, enum: dict[int, str] | None) -> dict[int, str] | None:
        if enum is None:
            return None
        if not enum:
            raise ValueError("an enum needs at least one value: label pair")
        seen: dict[str, int] = {}
        for raw, label in enum.items():
            if not label:
                raise ValueError(f"the label of {raw} is empty")
            if label in seen:
                raise ValueError(f"label {label!r} is used for {seen[label]} and {raw}")
            seen[label] = raw
        return enum

    @model_validator(mode="after")
    def _consistent(self) -> ModbusTagConfig:
        _check_order(self.order, self.byte_order, self.word_order)
        bits = self.table in BIT_TABLES
        if bits:
            if self.type != "bool":
                raise ValueError(f"{self.table} hold single bits: type must be bool")
            extras = [
                name
                for name in ("bit", "length", "byte_order", "word_order", "order")
                if getattr(self, name) is not None
            ]
            if extras:
                raise ValueError(f"{' and '.join(extras)} do not apply to {self.table}")
        elif self.type == "bool" and self.bit is None:
            raise ValueError(
                f"a bool in the {self.table} register table needs `bit` (0..15): which bit "
                "of the register"
            )
        if self.bit is not None and (bits or self.type != "bool"):
            raise ValueError("`bit` applies only to type bool in a register table")
        if (self.type == "string") != (self.length is not None):
            raise ValueError(
                "type string needs `length` (characters)"
                if self.type == "string"
                else "`length` applies only to type string"
            )
        if self.type in ("bool", "string") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset do not apply to type {self.type}")
        if self.enum is not None:
            if self.type in ("float32", "float64", "string"):
                raise ValueError(f"enum applies to integer and bool tags, not {self.type}")
            if self.scale != 1.0 or self.offset != 0.0:
                raise ValueError("enum labels raw values: it cannot be combined with scale/offset")
            if self.type == "bool" and not set(self.enum) <= {0, 1}:
                raise ValueError("the enum of a bool tag can only label 0 and 1")
            dtype = self.dtype
            if self.type != "bool":
                out = [raw for raw in self.enum if not dtype.minimum <= raw <= dtype.maximum]
                if out:
                    raise ValueError(f"enum values {out} do not fit a {self.type}")
        return self

    @property
    def dtype(self) -> DataType:
        """The codec type of a register tag (a numeric type, :data:`BIT` or a string)."""
        if self.type == "bool":
            return BIT
        if self.type == "string":
            return string_type(self.length or 1)
        return TYPES[self.type]

    @property
    def registers(self) -> int:
        """How many addresses of its table the value occupies (1 for coils)."""
        if self.table in BIT_TABLES:
            return 1
        return self.dtype.registers

    @property
    def writable(self) -> bool:
        """Whether the table can be written (coils and holding registers)."""
        return self.table in ("coils", "holding")


_CSV_COLUMNS = (
    "name", "table", "address", "type", "order", "byte_order", "word_order", "scale",
    "offset", "unit", "interval", "unit_id", "bit", "length", "enum", "description",
)
"""Columns a ``tags_csv`` file may have (a header row names them, in any order)."""


def _csv_enum(text: str) -> dict[str, str]:
    """``"0=stopped; 1=running"`` → ``{"0": "stopped", "1": "running"}``."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        raw, sep, label = part.partition("=")
        if not sep:
            raise ValueError(f"expected raw=label pairs separated by ';', got {part.strip()!r}")
        out[raw.strip()] = label.strip()
    return out


def _location(error: Any) -> str:
    return ".".join(str(p) for p in error["loc"])


class ModbusDeviceConfig(DeviceConfig):
    """A Modbus device: over TCP, over a serial line (RTU) or RTU framed over TCP."""

    type: Literal["modbus"] = Field(description="Selects the Modbus adapter")
    transport: Transport = Field(
        default="tcp",
        description="tcp (Modbus TCP, MBAP framing), rtu (a serial line: `serial_port`, "
        "`baudrate`, ...) or rtu-over-tcp (RTU frames over a TCP socket, as serial-to-"
        "Ethernet converters in transparent mode expect: `host`, `port`)",
    )
    host: str | None = Field(
        default=None,
        min_length=1,
        description="Host name or IP address (tcp and rtu-over-tcp)",
    )
    port: int = Field(default=502, ge=1, le=65535, description="TCP port (tcp, rtu-over-tcp)")
    serial_port: str | None = Field(
        default=None,
        min_length=1,
        description="rtu: the serial device (/dev/ttyUSB0, COM3) or a pyserial URL "
        "(socket://host:port, rfc2217://host:port). Device entries with the same serial_port "
        "share the line: one request at a time, `inter_frame_delay` apart",
    )
    baudrate: int = Field(default=19200, ge=300, le=4_000_000, description="rtu: bits per second")
    parity: Literal["N", "E", "O"] = Field(
        default="E", description="rtu: parity N (none), E (even, the Modbus default) or O (odd)"
    )
    stopbits: Literal[1, 2] = Field(default=1, description="rtu: stop bits")
    bytesize: Literal[7, 8] = Field(default=8, description="rtu: data bits")
    inter_frame_delay: DelaySeconds | None = Field(
        default=None,
        description="Silence kept between the end of one answer and the next request on the "
        "line. Default: 3.5 character times at `baudrate` for rtu (at least 1.75 ms), none "
        "for tcp and rtu-over-tcp",
    )
    unit: int = Field(
        default=1,
        ge=0,
        le=255,
        description="Modbus unit identifier (slave id) of the tags without `unit_id`; 255 or "
        "0 for many TCP-only devices",
    )
    addressing: Addressing = Field(
        default="zero-based",
        description="How tag addresses are written: zero-based (protocol addresses, as sent "
        "on the wire) or modicon (1-based references such as 40001; see the tag `address`)",
    )
    byte_order: ByteOrder = Field(
        default="big", description="Default byte order inside each register"
    )
    word_order: WordOrder = Field(
        default="big", description="Default order of the registers of 32/64-bit values"
    )
    order: Order | None = Field(
        default=None, description=f"Default layout as a shorthand. {_ORDER_HELP}"
    )
    max_registers_per_request: int = Field(
        default=MAX_REGISTERS,
        ge=1,
        le=MAX_REGISTERS,
        description="Largest register read request; lower it for devices that refuse long "
        "reads",
    )
    max_bits_per_request: int = Field(
        default=MAX_BITS,
        ge=1,
        le=MAX_BITS,
        description="Largest coil/discrete-input read request",
    )
    max_gap: int = Field(
        default=0,
        ge=0,
        le=MAX_REGISTERS - 1,
        description="Unused addresses (registers, or bits for coils/discrete inputs) that may "
        "be read to merge two neighbouring blocks into one request. A merged block that the "
        "device refuses with exception 2 is split again automatically",
    )
    request_timeout: Duration | None = Field(
        default=None,
        description="Time limit of one request/answer exchange. Default: `timeout` divided "
        "by (retries + 1), so that every attempt of a request fits one read",
    )
    retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Further attempts of a request that got no answer in `request_timeout`",
    )
    bad_address_retry: Duration = Field(
        default=300.0,
        description="A block refused with exception 2 (illegal data address) is split until "
        "the refused addresses are isolated; the split plan is kept this long, then the "
        "original blocks are tried again",
    )
    single_register_writes: bool = Field(
        default=True,
        description="Write one-register values with function code 6 (and single coils with "
        "5); false: always use 16 (15 for coils), for devices without the single-write codes",
    )
    tags_csv: str | None = Field(
        default=None,
        description="A CSV file with more tags (header row: name, table, address, type and "
        "any of order, byte_order, word_order, scale, offset, unit, interval, unit_id, bit, "
        "length, enum as `0=stopped;1=running`, description). Relative paths are relative to "
        "the directory of the config file when the loader passes it, else to the working "
        "directory",
    )
    tags: list[ModbusTagConfig] = Field(
        default_factory=list, description="The values to read"
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_tags(cls, data: Any, info: ValidationInfo) -> Any:
        """Load ``tags_csv`` and resolve Modicon addresses, with errors located at the
        tag field (YAML) or at ``file:line:column`` (CSV)."""
        if not isinstance(data, dict):
            return data
        modicon = data.get("addressing") == "modicon"
        errors = _connection_errors(data)
        tags = data.get("tags")
        if isinstance(tags, list) and modicon:
            resolved: list[Any] = []
            for i, tag in enumerate(tags):
                if isinstance(tag, dict) and "address" in tag:
                    try:
                        table, address = parse_modicon(tag["address"], tag.get("table"))
                    except ValueError as exc:
                        errors.append(_error(("tags", i, "address"), str(exc), tag["address"]))
                        resolved.append(tag)
                        continue
                    tag = {**tag, "table": table, "address": address}
                resolved.append(tag)
            tags = resolved
        csv_path = data.get("tags_csv")
        if isinstance(csv_path, str) and csv_path:
            base = (info.context or {}).get("config_dir") if info.context else None
            try:
                loaded = _load_csv(csv_path, base, modicon)
            except _CsvProblems as exc:
                errors.extend(_error(("tags_csv",), problem, csv_path) for problem in exc.problems)
                loaded = []
            tags = [*(tags if isinstance(tags, list) else []), *loaded]
        if errors:
            raise ValidationError.from_exception_data("ModbusDeviceConfig", errors)
        if tags is not data.get("tags"):
            data = {**data, "tags": tags}
        return data

    @model_validator(mode="after")
    def _resolve_order(self) -> ModbusDeviceConfig:
        explicit = self.model_fields_set
        _check_order(
            self.order,
            self.byte_order if "byte_order" in explicit else None,
            self.word_order if "word_order" in explicit else None,
        )
        if self.order is not None:
            # Normalise so the runtime reads byte_order/word_order only.
            self.byte_order, self.word_order = ORDERS[self.order]
        return self

    @model_validator(mode="after")
    def _tags_fit_requests(self) -> ModbusDeviceConfig:
        for i, tag in enumerate(self.tags):
            if tag.table not in BIT_TABLES and tag.registers > self.max_registers_per_request:
                raise ValueError(
                    f"tags[{i}] ({tag.name!r}) is a {tag.type} of {tag.registers} registers, "
                    f"more than max_registers_per_request={self.max_registers_per_request}"
                )
        return self

    @property
    def endpoint(self) -> str:
        """Where the device is, for messages: ``host:port`` or the serial port."""
        if self.transport == "rtu":
            return str(self.serial_port)
        return f"{self.host}:{self.port}"

    @property
    def effective_request_timeout(self) -> float:
        """The time limit of one request/answer exchange, in seconds."""
        if self.request_timeout is not None:
            return self.request_timeout
        return self.timeout / (self.retries + 1)

    @property
    def effective_inter_frame_delay(self) -> float:
        """Seconds of silence between frames on the line (see ``inter_frame_delay``)."""
        if self.inter_frame_delay is not None:
            return self.inter_frame_delay
        if self.transport != "rtu":
            return 0.0
        bits_per_char = 1 + self.bytesize + (self.parity != "N") + self.stopbits
        return max(3.5 * bits_per_char / self.baudrate, 0.00175)

    def unit_of(self, tag: ModbusTagConfig) -> int:
        """The unit id that answers for ``tag``."""
        return self.unit if tag.unit_id is None else tag.unit_id

    def layout(self, tag: ModbusTagConfig) -> tuple[ByteOrder, WordOrder]:
        """The effective ``(byte_order, word_order)`` of ``tag``: its own ``order`` if
        given, else each of its fields falling back to the device's."""
        if tag.order is not None:
            return ORDERS[tag.order]
        return (tag.byte_order or self.byte_order, tag.word_order or self.word_order)


def _connection_errors(data: dict[str, Any]) -> list[InitErrorDetails]:
    """The transport's required and forbidden fields, located at the field."""
    transport = data.get("transport", "tcp")
    if transport not in ("tcp", "rtu", "rtu-over-tcp"):
        return []  # the transport field reports its own error
    errors: list[InitErrorDetails] = []
    needed, other = ("serial_port", "host") if transport == "rtu" else ("host", "serial_port")
    if data.get(needed) is None:
        errors.append(InitErrorDetails(type="missing", loc=(needed,), input=data))
    if data.get(other) is not None:
        errors.append(_error(
            (other,),
            f"{other} does not apply to transport {transport} (it uses {needed})",
            data[other],
        ))
    return errors


def _error(loc: tuple[int | str, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


class _CsvProblems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


_BLANK = re.compile(r"^\s*$")


def _load_csv(path: str, base: str | None, modicon: bool) -> list[ModbusTagConfig]:
    """Validated tags of a ``tags_csv`` file; raises :class:`_CsvProblems` with one
    ``file:line:column: field: message`` per problem (every row is checked)."""
    file = Path(path)
    if not file.is_absolute() and base is not None:
        file = Path(base) / file
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise _CsvProblems([f"{file}: cannot read the tag file: {exc.strerror}"]) from exc
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise _CsvProblems([f"{file}:1:1: the file is empty; expected a header row"])
    header = [h.strip() for h in rows[0]]
    problems: list[str] = []
    for col, name in enumerate(header, 1):
        if name not in _CSV_COLUMNS:
            problems.append(
                f"{file}:1:{col}: unknown column {name!r} (known: {', '.join(_CSV_COLUMNS)})"
            )
    for required in ("name", "table", "address"):
        if required not in header:
            problems.append(f"{file}:1:1: the header has no {required!r} column")
    if problems:
        raise _CsvProblems(problems)
    column_of = {name: i + 1 for i, name in enumerate(header)}
    tags: list[ModbusTagConfig] = []
    for line, row in enumerate(rows[1:], 2):
        if not row or all(_BLANK.match(cell) for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if len(row) > len(header):
            problems.append(
                f"{file}:{line}:{len(header) + 1}: {len(row)} cells but the header has "
                f"{len(header)} columns"
            )
            continue
        data: dict[str, Any] = {
            name: cell.strip() for name, cell in zip(header, row, strict=False) if cell.strip()
        }
        if "enum" in data:
            try:
                data["enum"] = _csv_enum(data["enum"])
            except ValueError as exc:
                problems.append(f"{file}:{line}:{column_of['enum']}: enum: {exc}")
                continue
        if modicon and "address" in data:
            try:
                data["table"], data["address"] = parse_modicon(data["address"], data.get("table"))
            except ValueError as exc:
                problems.append(f"{file}:{line}:{column_of['address']}: address: {exc}")
                continue
        try:
            tags.append(ModbusTagConfig.model_validate(data))
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                col = column_of.get(field, 1)
                what = _location(error) or "row"
                message = "required column is empty" if error["type"] == "missing" else (
                    str(error["msg"]).removeprefix("Value error, ")
                )
                problems.append(f"{file}:{line}:{col}: {what}: {message}")
    if problems:
        raise _CsvProblems(problems)
    return tags
