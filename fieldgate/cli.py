"""The ``fieldgate`` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from cloud.cli import app as cloud_app
from fieldgate.probe import app as probe_app
from gateway.buffer_cli import app as buffer_app
from gateway.cli import app as gateway_app
from gateway.cli import setup_logging
from simulators.cli import app as sim_app

app = typer.Typer(
    help="fieldgate: industrial edge gateway with store-and-forward and a bundled cloud core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(gateway_app, name="gateway")
app.add_typer(cloud_app, name="cloud")
app.add_typer(sim_app, name="sim", help="Run device simulators driven by the plant model.")
app.add_typer(probe_app, name="probe")
app.add_typer(buffer_app, name="buffer")

bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

DEFAULT_DEMO_CONFIG = Path("config/demo.yaml")


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: until Ctrl-C)")
    ] = None,
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Gateway config to run")
    ] = DEFAULT_DEMO_CONFIG,
) -> None:
    """Start cloud, simulators and a gateway on free ports and show live values."""
    from fieldgate.demo import run_demo

    if not config.exists():
        typer.echo(f"demo config {config} not found (run from the fieldgate source tree)", err=True)
        raise typer.Exit(2)
    setup_logging("warning")
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    console = Console()
    summary = asyncio.run(run_demo(data, duration, console))
    console.print(summary, markup=False, highlight=False)
    if " 0 lost" not in summary:
        raise typer.Exit(1)


@bench_app.command("e2e")
def bench_e2e(
    tags: Annotated[int, typer.Option(help="Number of tags polled")] = 1000,
    interval: Annotated[int, typer.Option(help="Poll interval in milliseconds")] = 1000,
    duration: Annotated[float, typer.Option(help="Measured seconds")] = 20.0,
) -> None:
    """Simulator → gateway → broker → cloud store: rates, latency, gateway CPU and memory."""
    from fieldgate.bench.e2e import run_e2e

    setup_logging("warning")
    asyncio.run(run_e2e(tags=tags, interval_ms=interval, duration=duration, console=Console()))


@bench_app.command("modbus")
def bench_modbus(
    tags: Annotated[int, typer.Option(help="Contiguous float32 tags")] = 10000,
) -> None:
    """Requests per poll next to the protocol minimum, and tag reads per second."""
    from fieldgate.bench.modbus import run_modbus_bench

    setup_logging("warning")
    asyncio.run(run_modbus_bench(tags, Console()))


@bench_app.command("buffer")
def bench_buffer(
    backlog: Annotated[
        int, typer.Option(min=1000, help="Readings in the drain-to-cloud backlog")
    ] = 3_600_000,
    rows: Annotated[
        int, typer.Option(min=10_000, help="Readings per insert/drain measurement")
    ] = 500_000,
    as_json: Annotated[bool, typer.Option("--json", help="Also print the figures as JSON")] = False,
) -> None:
    """Insert and drain rows/s per durability mode, and the time to drain a backlog into
    a local cloud (default: one hour of 1000 tags at 1 s)."""
    from fieldgate.bench.buffer import run_buffer_bench

    setup_logging("warning")
    console = Console()
    result = asyncio.run(run_buffer_bench(console, backlog=backlog, rows=rows))
    if as_json:
        typer.echo(json.dumps(result, indent=2))


def main() -> None:
    app()
