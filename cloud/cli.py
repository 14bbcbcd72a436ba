"""``fieldgate cloud …``: run a cloud node and provision orgs, keys and gateways.

The lead's top-level CLI mounts :data:`app` as ``fieldgate cloud``. Options override the
``FIELDGATE_CLOUD_*`` environment (see :class:`cloud.settings.CloudSettings`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from cloud.bootstrap import add_gateway, bootstrap
from cloud.errors import CloudError
from cloud.settings import CloudSettings
from cloud.store.db import open_store

app = typer.Typer(name="cloud", help="The fieldgate cloud core.", no_args_is_help=True)
gateway_app = typer.Typer(name="gateway", help="Register gateways.", no_args_is_help=True)
app.add_typer(gateway_app)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="database URL (default: FIELDGATE_CLOUD_DB_URL or ./data/cloud.db)"),
]


def _settings(**overrides: Any) -> CloudSettings:
    try:
        return CloudSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            typer.secho(f"invalid setting {field}: {error['msg']}", err=True, fg="red")
        raise typer.Exit(2) from exc


@app.command()
def serve(
    db: DbOption = None,
    mqtt: Annotated[
        str | None,
        typer.Option("--mqtt", help="external broker mqtt://host:port; omit for the embedded one"),
    ] = None,
    host: Annotated[str, typer.Option(help="HTTP listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    broker_host: Annotated[
        str | None, typer.Option(help="embedded broker listen address")
    ] = None,
    broker_port: Annotated[
        int | None,
        typer.Option(help="embedded broker port, device tokens (0 = ephemeral; default 1883)"),
    ] = None,
    broker_tls_port: Annotated[
        int | None,
        typer.Option(help="embedded broker mutual-TLS port, device certificates (default off)"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run a cloud node: REST API (+ /docs), MQTT ingest, embedded broker unless --mqtt."""
    import uvicorn

    from cloud.app import create_app

    settings = _settings(
        db_url=db, mqtt_url=mqtt, broker_host=broker_host, broker_port=broker_port,
        broker_tls_port=broker_tls_port,
    )
    level = logging.getLevelName(log_level.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # amqtt and its state machine log every connection and transition at INFO
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower())


@app.command()
def init(
    org: Annotated[str, typer.Option("--org", help="organisation name")],
    db: DbOption = None,
    gateway: Annotated[
        list[str] | None, typer.Option("--gateway", help="register this gateway (repeatable)")
    ] = None,
) -> None:
    """Create the org (if new) and print a new owner API key and, per gateway, a new device
    token (its MQTT password, username = the gateway name); they are shown only once."""
    settings = _settings(db_url=db)

    async def run() -> None:
        async with open_store(settings.db_url, schema=settings.db_schema) as store:
            done = await bootstrap(store, org, gateways=gateway or ())
        typer.echo(f"org: {done.org}")
        for name in done.gateways:
            typer.echo(f"gateway registered: {name}")
        for name, token in done.tokens.items():
            typer.echo(f"gateway {name} device token (shown once): {token}")
        typer.echo(f"owner API key (shown once): {done.api_key}")

    _run(run())


@gateway_app.command("add")
def gateway_add(
    name: Annotated[str, typer.Argument(help="gateway name, as in the gateway's config")],
    org: Annotated[str, typer.Option("--org", help="organisation name")],
    db: DbOption = None,
) -> None:
    """Register a gateway and print its device token: the MQTT password of the gateway
    (username = its name) in its config's ``uplink``; shown only once."""
    settings = _settings(db_url=db)

    async def run() -> None:
        async with open_store(settings.db_url, schema=settings.db_schema) as store:
            token = await add_gateway(store, org, name)
        typer.echo(f"gateway registered: {name} (org {org})")
        typer.echo(f"gateway {name} device token (shown once): {token}")

    _run(run())


@app.command()
def permissions() -> None:
    """Print the permission tables (Markdown) generated from the API's routes."""
    from cloud.api.route_permissions import markdown_table
    from cloud.app import create_app

    typer.echo(markdown_table(create_app(CloudSettings(db_url="sqlite+aiosqlite:///:memory:"))),
               nl=False)


def _run(coro: Any) -> None:
    try:
        asyncio.run(coro)
    except CloudError as exc:
        typer.secho(f"error: {exc.detail}", err=True, fg="red")
        raise typer.Exit(1) from exc


if __name__ == "__main__":  # pragma: no cover
    app()
