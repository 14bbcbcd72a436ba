"""Alembic environment: runs on the connection handed in by ``cloud.store.db.migrate``.

Standalone use (``alembic -c ... upgrade head``) is supported too: the URL then comes from
``sqlalchemy.url`` or ``FIELDGATE_CLOUD_DB_URL``, and an async engine is created here.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from cloud.store.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place: batch mode recreates tables.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone(url: str) -> None:
    from cloud.store.db import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "FIELDGATE_CLOUD_DB_URL", "sqlite+aiosqlite:///./data/cloud.db"
    )
    asyncio.run(_run_standalone(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
