"""``fieldgate probe modbus``: show what a Modbus device answers, to help write a map.

Reads an address range of one table in the largest requests the protocol allows; a request
refused with an exception is split until each refused address is known, so the output
shows, per address (or per value of ``--type``), the raw registers, the decoded value or
the exception. Nothing is written to the device.

The lead mounts :data:`app` as ``fieldgate probe`` (``app.add_typer(probe_app, name="probe")``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from adapters.base import Quality
from adapters.modbus import ModbusAdapter, ModbusDeviceConfig
from adapters.modbus.planner import BIT_TABLES

__all__ = ["ProbeRow", "app", "parse_range", "probe_modbus"]

app = typer.Typer(help="Ask a device what it answers, to help write a register map.",
                  no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One probed address: its registers and value, or why there is none."""

    address: int
    raw: tuple[int, ...] | None
    value: Any
    error: str | None


def parse_range(text: str) -> tuple[int, int]:
    """``"0-99"`` → ``(0, 99)`` inclusive; ``"7"`` → ``(7, 7)``. Raises ``ValueError``."""
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last) if sep else int(first)
    except ValueError:
        raise ValueError(f"expected a range such as 0-99, got {text!r}") from None
    if not 0 <= lo <= hi <= 65535:
        raise ValueError(f"the range must be within 0..65535 with start <= end, got {text!r}")
    return lo, hi


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or "]" in port:
        return endpoint, 502
    return host.strip("[]"), int(port)


async def probe_modbus(
    endpoint: str | None,
    *,
    unit: int = 1,
    table: str = "holding",
    first: int = 0,
    last: int = 99,
    type_name: str = "uint16",
    order: str = "ABCD",
    rtu: str | None = None,
    rtu_over_tcp: bool = False,
    baudrate: int = 19200,
    parity: str = "E",
    stopbits: int = 1,
    timeout: float = 2.0,  # noqa: ASYNC109 - the device's answer time, passed to its config
) -> list[ProbeRow]:
    """Read ``first..last`` of ``table`` from ``endpoint`` (``host[:port]``) or the serial
    port ``rtu``; returns one row per value (every address for 16-bit types, every second
    for 32-bit ones...). Raises :class:`ConnectError` when the device cannot be reached."""
    is_bits = table in BIT_TABLES
    type_name = "bool" if is_bits else type_name
    step = {"int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}.get(
        type_name, 1
    )
    tags: list[dict[str, Any]] = []
    for address in range(first, last + 1, step):
        if address + step > 65536:
            break
        tag: dict[str, Any] = {"name": f"a{address}", "table": table, "address": address,
                               "type": type_name}
        if not is_bits:
            tag["order"] = order if step > 1 else None
            if type_name == "bool":
                tag["bit"] = 0
        tags.append({k: v for k, v in tag.items() if v is not None})
    connection: dict[str, Any]
    if rtu is not None:
        connection = {"transport": "rtu", "serial_port": rtu, "baudrate": baudrate,
                      "parity": parity, "stopbits": stopbits}
    else:
        if endpoint is None:
            raise ValueError("give HOST[:PORT] or --rtu PORT")
        host, port = _split_endpoint(endpoint)
        connection = {"transport": "rtu-over-tcp" if rtu_over_tcp else "tcp", "host": host,
                      "port": port}
    config = ModbusDeviceConfig.model_validate({
        "type": "modbus", "name": "probe", "unit": unit, "timeout": timeout, "retries": 0,
        **connection, "tags": tags,
    })
    adapter = ModbusAdapter(config)
    raw_config = ModbusDeviceConfig.model_validate({
        **config.model_dump(exclude={"tags", "tags_csv"}),
        "tags": [
            {"name": t["name"], "table": table, "address": t["address"],
             "type": "bool" if is_bits else "uint16"}
            | ({"bit": 0} if type_name == "bool" and not is_bits else {})
            for t in tags
        ] if step == 1 else [
            {"name": f"r{a}", "table": table, "address": a, "type": "uint16"}
            for t in tags for a in range(t["address"], t["address"] + step)
        ],
    })
    await adapter.connect()
    try:
        readings = await adapter.read(tuple(config.tags))
        raw_readings: dict[int, Any] = {}
        if not is_bits:
            raw_tags = tuple(raw_config.tags)
            raw_adapter = ModbusAdapter(raw_config)
            raw_adapter._line = adapter._line  # same session: no second connection
            raw_values = await raw_adapter.read(raw_tags)
            for raw_tag, raw_reading in zip(raw_tags, raw_values, strict=True):
                raw_readings[raw_tag.address] = raw_reading.value
    finally:
        await adapter.close()
    rows = []
    for probed, reading in zip(config.tags, readings, strict=True):
        if reading.quality is Quality.BAD:
            rows.append(ProbeRow(probed.address, None, None, reading.reason))
            continue
        raw: tuple[int, ...] | None = None
        if not is_bits:
            at = probed.address
            words = [raw_readings.get(a) for a in range(at, at + step)]
            raw = tuple(int(w) for w in words if isinstance(w, int))
        rows.append(ProbeRow(probed.address, raw, reading.value, None))
    return rows


def print_rows(rows: list[ProbeRow], table: str, console: Console) -> None:
    """The rows as a table: protocol address, Modicon reference, raw, value or exception."""
    out = Table(title=f"{table}: {len(rows)} values, "
                f"{sum(r.error is None for r in rows)} answered")
    for column in ("address", "modicon", "raw", "value"):
        out.add_column(column, justify="right" if column != "value" else "left")
    prefix = {"coils": "0", "discrete_inputs": "1", "input": "3", "holding": "4"}.get(table, "")
    for row in rows:
        raw = " ".join(f"{w:04X}" for w in row.raw) if row.raw else ""
        value = row.error if row.error is not None else repr(row.value)
        style = "red" if row.error is not None else None
        out.add_row(str(row.address), _modicon(prefix, row.address), raw, value,
                    style=style)
    console.print(out)


@app.callback()
def _group() -> None:
    """Keep ``modbus`` a sub-command while it is the only protocol."""


def _modicon(prefix: str, address: int) -> str:
    number = address + 1
    return f"{prefix}{number:04d}" if number <= 9999 else f"{prefix}{number:05d}"


@app.command()
def modbus(
    endpoint: Annotated[str | None, typer.Argument(
        metavar="HOST[:PORT]", help="Modbus TCP device (port 502 unless given)")] = None,
    unit: Annotated[int, typer.Option(min=0, max=255, help="Unit id (slave id)")] = 1,
    table: Annotated[str, typer.Option(
        help="coils, discrete_inputs, input or holding")] = "holding",
    range_: Annotated[str, typer.Option("--range", help="0-based addresses, e.g. 0-99")] = "0-99",
    type_: Annotated[str, typer.Option("--type", help=(
        "Decode as: uint16, int16, int32, uint32, int64, uint64, float32, float64"))] = "uint16",
    order: Annotated[str, typer.Option(help="ABCD, CDAB, BADC or DCBA")] = "ABCD",
    rtu: Annotated[str | None, typer.Option(
        help="Serial port (or pyserial URL) for Modbus RTU instead of TCP")] = None,
    rtu_over_tcp: Annotated[bool, typer.Option(
        "--rtu-over-tcp", help="RTU frames over TCP (serial-to-Ethernet converters)")] = False,
    baud: Annotated[int, typer.Option(help="RTU baud rate")] = 19200,
    parity: Annotated[str, typer.Option(help="RTU parity N, E or O")] = "E",
    stopbits: Annotated[int, typer.Option(help="RTU stop bits")] = 1,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer")] = 2.0,
) -> None:
    """Print what a Modbus device answers for an address range (reads only)."""
    from gateway.errors import AdapterError

    if table not in ("coils", "discrete_inputs", "input", "holding"):
        raise typer.BadParameter("coils, discrete_inputs, input or holding", param_hint="--table")
    try:
        first, last = parse_range(range_)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--range") from exc
    try:
        rows = asyncio.run(probe_modbus(
            endpoint, unit=unit, table=table, first=first, last=last, type_name=type_,
            order=order, rtu=rtu, rtu_over_tcp=rtu_over_tcp, baudrate=baud, parity=parity,
            stopbits=stopbits, timeout=timeout,
        ))
    except (AdapterError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    print_rows(rows, table, Console())
