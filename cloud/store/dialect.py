"""``INSERT … ON CONFLICT`` for the two supported backends (both speak the same API)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def upsert_insert(session: AsyncSession, table: Any) -> Any:
    """The dialect ``insert(table)`` offering ``on_conflict_do_nothing/do_update``."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database dialect {name!r}")
