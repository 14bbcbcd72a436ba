"""Alembic migrations on SQLite and PostgreSQL: head matches the models exactly, and the
whole chain downgrades to nothing and upgrades again."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from cloud_testkit import Database
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from cloud.store.db import MIGRATIONS, create_engine, migrate
from cloud.store.models import Base

pytestmark = pytest.mark.integration


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def _alembic(connection: Connection, verb: str, target: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    getattr(command, verb)(config, target)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def test_head_matches_the_models_and_the_chain_round_trips(database: Database) -> None:
    engine = create_engine(database.url, schema=database.schema)
    try:
        await migrate(engine, schema=database.schema)
        async with engine.begin() as conn:
            assert await conn.run_sync(_diff) == []
            assert await conn.run_sync(_tables) == set(Base.metadata.tables)
            await conn.run_sync(_alembic, "downgrade", "base")
            assert await conn.run_sync(_tables) == set()
            await conn.run_sync(_alembic, "upgrade", "0001")
            assert "devices" in await conn.run_sync(_tables)
            await conn.run_sync(_alembic, "upgrade", "head")
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
