"""``fieldgate gateway ...``: run, check and describe gateway configurations."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from gateway.config import json_schema
from gateway.errors import ConfigError
from gateway.loader import load_config

app = typer.Typer(
    help="Run the edge gateway and work with its configuration.", no_args_is_help=True
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Gateway config file (YAML)", show_default=False)
]


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


@app.command()
def check(config: ConfigOption) -> None:
    """Validate a config file and print every problem with its path and line."""
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    tags = sum(len(d.tags) for d in loaded.devices)
    typer.echo(
        f"{config}: ok — gateway {loaded.gateway.id}, {len(loaded.devices)} device(s), "
        f"{tags} tag(s), config hash {loaded.digest()}"
    )


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout")
    ] = None,
) -> None:
    """Print the JSON Schema of the gateway config (for editors and CI validation)."""
    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@app.command()
def run(
    config: ConfigOption,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the gateway until SIGINT/SIGTERM; buffered readings survive any stop."""
    from gateway.runtime import Gateway

    setup_logging(log_level)
    try:
        loaded = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None

    async def main() -> None:
        gateway = Gateway(loaded, config_path=config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.stop)
        await gateway.run()
        logging.getLogger("gateway").info("gateway %s stopped", loaded.gateway.id)

    asyncio.run(main())


@app.command()
def enroll(
    config: ConfigOption,
    cloud: Annotated[
        str,
        typer.Option("--cloud", help="Base URL of the cloud, e.g. http://cloud.example:8080",
                     show_default=False),
    ],
    token: Annotated[
        str,
        typer.Option("--token", envvar="FIELDGATE_DEVICE_TOKEN",
                     help="Device token 'fgd_...' of this gateway", show_default=False),
    ],
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to store the files (default: <config dir>/certs/<id>)",
                     show_default=False),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key and certificate")
    ] = False,
) -> None:
    """Create a key and CSR, get the client certificate from the cloud, store both and
    print the uplink.tls snippet for the config."""
    from gateway import enroll as enrolment

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    gateway_id = loaded.gateway.id
    target = directory if directory is not None else config.parent / "certs" / gateway_id
    try:
        enrolled = enrolment.enroll(gateway_id, cloud, token, target, force=force)
    except enrolment.EnrollError as exc:
        typer.echo(f"enroll failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"gateway {gateway_id} enrolled: certificate {enrolled.serial} valid until "
        f"{enrolled.not_after:%Y-%m-%d}, files in {target}"
    )
    typer.echo("Add this to the gateway config (uplink.url mqtts://... for TLS):\n")
    typer.echo(enrolment.tls_snippet(enrolled), nl=False)
