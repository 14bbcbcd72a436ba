"""Initial schema: orgs, API keys, devices, raw points, latest values.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orgs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orgs")),
        sa.UniqueConstraint("name", name=op.f("uq_orgs_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("org_id", BigId, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_api_keys_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_org_id"), "api_keys", ["org_id"])
    op.create_table(
        "devices",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("org_id", BigId, nullable=False),
        sa.Column("name", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", BigId, nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("status", sa.JSON(), nullable=True),
        sa.Column("last_seen_at", Timestamp, nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.id"], name=op.f("fk_devices_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["devices.id"],
            name=op.f("fk_devices_parent_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_devices_org_id_name")),
    )
    op.create_index(op.f("ix_devices_org_id"), "devices", ["org_id"])
    op.create_index(op.f("ix_devices_parent_id"), "devices", ["parent_id"])
    op.create_index(
        "uq_devices_gateway_name",
        "devices",
        ["name"],
        unique=True,
        sqlite_where=sa.text("kind = 'gateway'"),
        postgresql_where=sa.text("kind = 'gateway'"),
    )
    op.create_table(
        "points",
        sa.Column("gateway_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False, comment="sample time, ms since the epoch"),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("num", sa.Float(precision=53), nullable=True),
        sa.Column("txt", sa.Text(), nullable=True),
        sa.Column("quality", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", "seq", name=op.f("pk_points")),
    )
    op.create_index("ix_points_device_tag_ts", "points", ["device_id", "tag", "ts", "seq"])
    op.create_table(
        "latest",
        sa.Column("device_id", sa.BigInteger(), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("org_id", sa.BigInteger(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("num", sa.Float(precision=53), nullable=True),
        sa.Column("txt", sa.Text(), nullable=True),
        sa.Column("quality", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("device_id", "tag", name=op.f("pk_latest")),
    )
    op.create_index(op.f("ix_latest_org_id"), "latest", ["org_id"])


def downgrade() -> None:
    op.drop_table("latest")
    op.drop_table("points")
    op.drop_table("devices")
    op.drop_table("api_keys")
    op.drop_table("orgs")
