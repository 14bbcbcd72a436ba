"""The store: async engine, session factory and start-up migrations (SQLite or PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class Store:
    """An open database: ``engine`` plus ``sessions`` (an ``async_sessionmaker``).

    Create with :func:`open_store`; it runs the migrations before handing the store out.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name


def create_engine(url: str, *, schema: str | None = None) -> AsyncEngine:
    """An async engine tuned per backend.

    SQLite: WAL, ``synchronous=NORMAL``, a busy timeout (the ingest writer and API writes
    share one file), and the parent directory is created. PostgreSQL: ``schema`` becomes
    the search path, so a deployment (or a test run) can live in its own schema.
    """
    sa_url = make_url(url)
    kwargs: dict[str, Any] = {}
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    elif schema is not None:
        kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    engine = create_async_engine(sa_url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA busy_timeout=30000",
    ):
        cursor.execute(pragma)
    cursor.close()


async def migrate(engine: AsyncEngine, *, schema: str | None = None) -> None:
    """Bring the schema to the newest Alembic revision (idempotent).

    Runs Alembic's command API on a connection of the async engine, so no second
    (synchronous) driver is needed.
    """
    if schema is not None and engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade_head)


def _upgrade_head(connection: Connection) -> None:
    # Imported here: alembic is only needed at start-up.
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@asynccontextmanager
async def open_store(url: str, *, schema: str | None = None) -> AsyncIterator[Store]:
    """Open the database at ``url``, migrate it, yield the :class:`Store`, dispose on exit."""
    engine = create_engine(url, schema=schema)
    try:
        await migrate(engine, schema=schema)
        log.info("store open: %s", make_url(url).render_as_string(hide_password=True))
        yield Store(engine)
    finally:
        await engine.dispose()
