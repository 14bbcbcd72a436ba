"""``fieldgate sim``: run the protocol simulators standalone (demos, manual tests, benches)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

import typer

from simulators.modbus import BENCH_BASE, BENCH_MAX, ModbusSimulator, serve

__all__ = ["app"]

app = typer.Typer(
    help="Run the plant simulators standalone, each on its own port, until Ctrl-C.",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Keep ``modbus`` a sub-command even while it is the only one."""


@app.command()
def modbus(
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="TCP port; 0 picks a free one")
    ] = 5020,
    unit: Annotated[int, typer.Option(min=0, max=255, help="Unit id answered; 0 answers all")] = 1,
    extra: Annotated[
        int,
        typer.Option(
            min=0,
            max=BENCH_MAX,
            help=f"Bench signals: float32 holding registers from address {BENCH_BASE}",
        ),
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the plant's deterministic noise")] = 0,
) -> None:
    """Serve the plant over Modbus TCP (register map: simulators/modbus.py)."""

    def ready(sim: ModbusSimulator) -> None:
        bench = f", {extra} bench signals" if extra else ""
        typer.echo(f"modbus simulator listening on {sim.address} (unit {unit}{bench})")

    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(serve(host, port, unit, extra, seed=seed, on_ready=ready))
        except OSError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
