"""SQLAlchemy 2 typed models. Every row carries ``org_id`` (tenancy is enforced by the
repositories, which scope every query by the caller's org).

Points are written with bulk Core inserts (never per-point ORM objects); the ORM classes
exist for schema, migrations and the read side.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; PostgreSQL gets BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Role(enum.StrEnum):
    """API key roles, weakest first (``Role.rank`` orders them)."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class DeviceKind(enum.StrEnum):
    GATEWAY = "gateway"
    FIELD = "field"


class ValueKind(enum.IntEnum):
    """How a point's value is stored, so every JSON scalar round-trips exactly."""

    NULL = 0
    BOOL = 1
    INT = 2
    FLOAT = 3
    STR = 4


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored; ``prefix`` (the key's first characters,
    unique) finds the row without scanning."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Device(Base):
    """A gateway or a field device (``"{gateway}.{device}"``, child of its gateway).

    Gateway names are unique across orgs as well: the MQTT topic namespace
    (``fg/v1/{gateway}/...``) is global, so the name alone must identify the gateway.
    """

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index(
            "uq_devices_gateway_name",
            "name",
            unique=True,
            sqlite_where=text("kind = 'gateway'"),
            postgresql_where=text("kind = 'gateway'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="CASCADE"), nullable=True, index=True
    )
    online: Mapped[bool | None] = mapped_column(nullable=True)
    status: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Point(Base):
    """A raw reading. ``(gateway_id, seq)`` is the key: re-delivery never duplicates.

    No foreign keys on the two hot tables: the ingest path resolves the device ids itself,
    and a per-row foreign-key check would cost throughput.
    """

    __tablename__ = "points"
    __table_args__ = (Index("ix_points_device_tag_ts", "device_id", "tag", "ts", "seq"),)

    gateway_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger)
    device_id: Mapped[int] = mapped_column(BigInteger)
    tag: Mapped[str] = mapped_column(String(255))
    ts: Mapped[int] = mapped_column(BigInteger, comment="sample time, ms since the epoch")
    kind: Mapped[int] = mapped_column(SmallInteger)
    num: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    txt: Mapped[str | None] = mapped_column(Text, nullable=True)
    quality: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Latest(Base):
    """The newest reading per (device, tag); replaced only by a newer (ts, seq)."""

    __tablename__ = "latest"

    device_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)
    org_id: Mapped[int] = mapped_column(BigInteger, index=True)
    ts: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[int] = mapped_column(SmallInteger)
    num: Mapped[float | None] = mapped_column(Float(53), nullable=True)
    txt: Mapped[str | None] = mapped_column(Text, nullable=True)
    quality: Mapped[int] = mapped_column(SmallInteger)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
