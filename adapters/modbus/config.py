"""Configuration models of the Modbus TCP adapter (``type: modbus``).

These models are the single source of the JSON Schema shown to integrators, so every field
carries a description. Validation is strict (unknown keys are errors) and cross-field rules
raise errors located at the offending field where pydantic allows it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from adapters.base import DeviceConfig, TagConfig
from adapters.modbus.codec import ORDERS, TYPES, ByteOrder, WordOrder
from adapters.modbus.planner import MAX_REGISTERS

__all__ = ["ModbusDeviceConfig", "ModbusTagConfig", "Order"]

Order = Literal["ABCD", "CDAB", "BADC", "DCBA"]
DataTypeName = Literal["int16", "uint16", "int32", "uint32", "float32"]

_ORDER_HELP = (
    "Shorthand for byte_order + word_order, naming the bytes of a 32-bit value as sent: "
    "ABCD = big/big, CDAB = word-swapped (big bytes, little words), "
    "BADC = byte-swapped (little bytes, big words), DCBA = little/little"
)


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
    """One value in a Modbus device: a register table, an address and a data type.

    The engineering value is ``raw * scale + offset``. Integer types without scaling are
    reported as integers, everything else as floats. Byte/word order default to the
    device's.
    """

    table: Literal["holding", "input"] = Field(
        description="Register table: holding (function code 3, writable) or input "
        "(function code 4, read-only)"
    )
    type: DataTypeName = Field(
        description="Data type; 32-bit types span two consecutive registers"
    )
    address: int = Field(
        ge=0,
        le=65535,
        description="Protocol address of the first register, 0-based as sent on the wire "
        "(register 40001 in 1-based documentation is holding address 0)",
    )
    byte_order: ByteOrder | None = Field(
        default=None, description="Byte order inside each register; default: the device's"
    )
    word_order: WordOrder | None = Field(
        default=None,
        description="Order of the registers of a 32-bit value; default: the device's",
    )
    order: Order | None = Field(default=None, description=_ORDER_HELP)
    scale: float = Field(
        default=1.0, description="Multiplier from raw to engineering value; not 0"
    )
    offset: float = Field(default=0.0, description="Added after scaling")

    @field_validator("address")
    @classmethod
    def _fits_address_space(cls, address: int, info: ValidationInfo) -> int:
        type_name = info.data.get("type")
        if type_name is None:  # the type itself failed; that error is reported instead
            return address
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

    @model_validator(mode="after")
    def _consistent_order(self) -> ModbusTagConfig:
        _check_order(self.order, self.byte_order, self.word_order)
        return self

    @property
    def registers(self) -> int:
        """How many registers the value occupies."""
        return TYPES[self.type].registers


class ModbusDeviceConfig(DeviceConfig):
    """A Modbus TCP device (or a Modbus TCP gateway in front of a serial line)."""

    type: Literal["modbus"] = Field(description="Selects the Modbus TCP adapter")
    host: str = Field(min_length=1, description="Host name or IP address of the device")
    port: int = Field(default=502, ge=1, le=65535, description="TCP port")
    unit: int = Field(
        default=1,
        ge=0,
        le=255,
        description="Modbus unit identifier (slave id); 255 or 0 for many TCP-only devices",
    )
    byte_order: ByteOrder = Field(
        default="big", description="Default byte order inside each register"
    )
    word_order: WordOrder = Field(
        default="big", description="Default order of the registers of 32-bit values"
    )
    order: Order | None = Field(
        default=None, description=f"Default layout as a shorthand. {_ORDER_HELP}"
    )
    max_registers_per_request: int = Field(
        default=MAX_REGISTERS,
        ge=1,
        le=MAX_REGISTERS,
        description="Largest read request; lower it for devices that refuse long reads",
    )
    max_gap: int = Field(
        default=0,
        ge=0,
        le=MAX_REGISTERS - 1,
        description="Unused registers that may be read to merge two neighbouring blocks "
        "into one request; only for devices that allow reading the gap",
    )
    tags: list[ModbusTagConfig] = Field(
        default_factory=list, description="The values to read"
    )

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
            if tag.registers > self.max_registers_per_request:
                raise ValueError(
                    f"tags[{i}] ({tag.name!r}) is a {tag.type} of {tag.registers} registers, "
                    f"more than max_registers_per_request={self.max_registers_per_request}"
                )
        return self

    def layout(self, tag: ModbusTagConfig) -> tuple[ByteOrder, WordOrder]:
        """The effective ``(byte_order, word_order)`` of ``tag``: its own ``order`` if
        given, else each of its fields falling back to the device's."""
        if tag.order is not None:
            return ORDERS[tag.order]
        return (tag.byte_order or self.byte_order, tag.word_order or self.word_order)
