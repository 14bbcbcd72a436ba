"""``fieldgate sim``: run the protocol simulators standalone (demos, manual tests, benches)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer

from simulators.control import HELP, read_commands
from simulators.faults import Faults, parse_exception
from simulators.modbus import BENCH_BASE, BENCH_MAX, ModbusSimulator
from simulators.modbus_map import MapError, load_map
from simulators.plant import Plant

__all__ = ["app"]

app = typer.Typer(
    help="Run the plant simulators standalone, each on its own port, until Ctrl-C.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Keep ``modbus`` a sub-command even while it is the only one."""


def _units(text: str | None, unit: int) -> list[int]:
    if not text:
        return [unit]
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected unit ids such as 1,2,3, got {text!r}") from None
    if not ids or any(not 0 <= i <= 255 for i in ids):
        raise typer.BadParameter(f"unit ids must be 0..255, got {text!r}")
    return ids


@app.command()
def modbus(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one")
    ] = 5020,
    unit: Annotated[int, typer.Option(min=0, max=255, help="Unit id answered; 0 answers all")] = 1,
    units: Annotated[
        str | None,
        typer.Option(help="Several unit ids, e.g. 1,2,3 (each its own copy of the map, one plant)"),
    ] = None,
    unknown_units: Annotated[
        str,
        typer.Option(help="Requests to other unit ids: 'exception' (code 4) or 'silent'"),
    ] = "exception",
    rtu_tcp: Annotated[
        bool, typer.Option("--rtu-tcp", help="RTU frames over TCP (serial-to-Ethernet converter)")
    ] = False,
    serial: Annotated[
        str | None,
        typer.Option(help="Serve RTU on this serial port (a device path or pyserial URL) "
                     "instead of TCP"),
    ] = None,
    baudrate: Annotated[int, typer.Option(help="Serial: baud rate")] = 19200,
    parity: Annotated[str, typer.Option(help="Serial: parity N, E or O")] = "N",
    stopbits: Annotated[int, typer.Option(min=1, max=2, help="Serial: stop bits")] = 1,
    bytesize: Annotated[int, typer.Option(min=7, max=8, help="Serial: data bits")] = 8,
    map_file: Annotated[
        Path | None,
        typer.Option("--map", help="Serve this register map (.yaml/.csv) instead of the plant's"),
    ] = None,
    extra: Annotated[
        int,
        typer.Option(
            min=0,
            max=BENCH_MAX,
            help=f"Bench signals: float32 holding registers from address {BENCH_BASE}",
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the plant's deterministic noise")] = 0,
    latency: Annotated[
        float, typer.Option(min=0.0, help="Fault: seconds added before every answer")
    ] = 0.0,
    exception: Annotated[
        list[str] | None,
        typer.Option(help="Fault: TABLE:ADDRESS=CODE answers exception CODE there, e.g. "
                     "holding:10=2 (repeatable)"),
    ] = None,
    silent_unit: Annotated[
        list[int] | None, typer.Option(help="Fault: this unit id never answers (repeatable)")
    ] = None,
    drop_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Fault: probability a request drops its connection"),
    ] = 0.0,
    control: Annotated[
        bool,
        typer.Option(help="Read fault commands from stdin while serving (type 'help')"),
    ] = False,
) -> None:
    """Serve the plant over Modbus TCP, RTU over TCP or serial RTU (register map:
    simulators/modbus.py; faults and the --control commands: simulators/control.py)."""
    if unknown_units not in ("exception", "silent"):
        raise typer.BadParameter("--unknown-units must be exception or silent")
    if parity.upper() not in ("N", "E", "O"):
        raise typer.BadParameter("--parity must be N, E or O")
    if serial and rtu_tcp:
        raise typer.BadParameter("--serial and --rtu-tcp exclude each other")
    try:
        faults = Faults(latency=latency, drop_rate=drop_rate)
        for spec in exception or []:
            faults.set_exception(*parse_exception(spec))
        for silent in silent_unit or []:
            faults.silence(silent)
        entries = load_map(map_file) if map_file is not None else None
    except (ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    plant = Plant(seed=seed, extra_signals=extra)
    options: dict[str, Any] = {
        "units": _units(units, unit),
        "unknown_units": unknown_units,
        "framer": "rtu" if (rtu_tcp or serial) else "socket",
        "serial_port": serial,
        "baudrate": baudrate,
        "parity": parity.upper(),
        "stopbits": stopbits,
        "bytesize": bytesize,
        "register_map": entries,
        "faults": faults,
    }

    async def run() -> None:
        async with ModbusSimulator(plant, host=host, port=port, **options) as sim:
            kind = "serial RTU" if serial else "RTU over TCP" if rtu_tcp else "Modbus TCP"
            bench = f", {extra} bench signals" if extra and map_file is None else ""
            ids = ",".join(map(str, sim.units))
            typer.echo(f"modbus simulator ({kind}) on {sim.address} (unit {ids}{bench}); "
                       f"{faults.describe()}")
            if control:
                typer.echo(f"control: {HELP}")
                await read_commands(faults, sim.plants.values())
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(run())
        except (OSError, MapError, RuntimeError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
