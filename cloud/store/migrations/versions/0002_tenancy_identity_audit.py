"""Users and console sessions, API key expiry, products, cohorts, device registry fields,
certificate authorities, device certificates and tokens, audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", BigId, autoincrement=True, nullable=False)


def _org(table: str) -> sa.Column[int]:
    return sa.Column(
        "org_id",
        BigId,
        sa.ForeignKey("orgs.id", name=f"fk_{table}_org_id_orgs", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "users",
        _id(),
        _org("users"),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_login_at", Timestamp, nullable=True),
        sa.Column("disabled_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_index("ix_users_org_id", "users", ["org_id"])
    op.create_table(
        "user_sessions",
        _id(),
        _org("user_sessions"),
        sa.Column(
            "user_id",
            BigId,
            sa.ForeignKey("users.id", name="fk_user_sessions_user_id_users", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_user_sessions"),
        sa.UniqueConstraint("prefix", name="uq_user_sessions_prefix"),
    )
    op.create_index("ix_user_sessions_org_id", "user_sessions", ["org_id"])
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", Timestamp, nullable=True))
        batch.add_column(
            sa.Column(
                "rate_limit",
                sa.Float(precision=53),
                nullable=True,
                comment="requests per second; NULL: the node's default",
            )
        )
        batch.add_column(sa.Column("created_by", sa.String(200), nullable=True))

    op.create_table(
        "products",
        _id(),
        _org("products"),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("org_id", "name", name="uq_products_org_id_name"),
    )
    op.create_index("ix_products_org_id", "products", ["org_id"])
    op.create_table(
        "cohorts",
        _id(),
        _org("cohorts"),
        sa.Column(
            "product_id",
            BigId,
            sa.ForeignKey(
                "products.id", name="fk_cohorts_product_id_products", ondelete="RESTRICT"
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cohorts"),
        sa.UniqueConstraint("org_id", "name", name="uq_cohorts_org_id_name"),
    )
    op.create_index("ix_cohorts_org_id", "cohorts", ["org_id"])
    op.create_index("ix_cohorts_product_id", "cohorts", ["product_id"])

    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("product_id", BigId, nullable=True))
        batch.add_column(sa.Column("cohort_id", BigId, nullable=True))
        batch.add_column(
            sa.Column("labels", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.add_column(
            sa.Column("attributes", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch.add_column(
            sa.Column("description", sa.Text(), nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(
            sa.Column(
                "revoked_at",
                Timestamp,
                nullable=True,
                comment="set: every credential of the device is refused",
            )
        )
        batch.add_column(sa.Column("updated_at", Timestamp, nullable=True))
        batch.create_foreign_key(
            "fk_devices_product_id_products", "products", ["product_id"], ["id"],
            ondelete="RESTRICT",
        )
        batch.create_foreign_key(
            "fk_devices_cohort_id_cohorts", "cohorts", ["cohort_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_devices_product_id", ["product_id"])
        batch.create_index("ix_devices_cohort_id", ["cohort_id"])
    # The defaults only filled existing rows; the application always writes these columns.
    with op.batch_alter_table("devices") as batch:
        batch.alter_column("labels", server_default=None)
        batch.alter_column("attributes", server_default=None)
        batch.alter_column("description", server_default=None)

    op.create_table(
        "certificate_authorities",
        _id(),
        _org("certificate_authorities"),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("encrypted_key", sa.Text(), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("not_after", Timestamp, nullable=False),
        sa.Column("jit_registration", sa.Boolean(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("disabled_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_certificate_authorities"),
        sa.UniqueConstraint("fingerprint", name="uq_certificate_authorities_fingerprint"),
        sa.UniqueConstraint("org_id", "name", name="uq_certificate_authorities_org_id_name"),
    )
    op.create_index(
        "ix_certificate_authorities_org_id", "certificate_authorities", ["org_id"]
    )
    op.create_table(
        "device_certificates",
        _id(),
        _org("device_certificates"),
        sa.Column(
            "device_id",
            BigId,
            sa.ForeignKey(
                "devices.id", name="fk_device_certificates_device_id_devices", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column(
            "ca_id",
            BigId,
            sa.ForeignKey(
                "certificate_authorities.id",
                name="fk_device_certificates_ca_id_certificate_authorities",
                ondelete="CASCADE",
            ),
            nullable=False,
        ),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("common_name", sa.String(160), nullable=False),
        sa.Column("not_before", Timestamp, nullable=False),
        sa.Column("not_after", Timestamp, nullable=False),
        sa.Column("source", sa.String(16), nullable=False, comment="issued | jit"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_certificates"),
        sa.UniqueConstraint("fingerprint", name="uq_device_certificates_fingerprint"),
    )
    op.create_index("ix_device_certificates_org_id", "device_certificates", ["org_id"])
    op.create_index("ix_device_certificates_device_id", "device_certificates", ["device_id"])
    op.create_index("ix_device_certificates_ca_id", "device_certificates", ["ca_id"])
    op.create_table(
        "device_tokens",
        _id(),
        _org("device_tokens"),
        sa.Column(
            "device_id",
            BigId,
            sa.ForeignKey(
                "devices.id", name="fk_device_tokens_device_id_devices", ondelete="CASCADE"
            ),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=True),
        sa.Column("last_used_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_device_tokens"),
        sa.UniqueConstraint("prefix", name="uq_device_tokens_prefix"),
    )
    op.create_index("ix_device_tokens_org_id", "device_tokens", ["org_id"])
    op.create_index("ix_device_tokens_device_id", "device_tokens", ["device_id"])
    op.create_table(
        "audit_log",
        _id(),
        _org("audit_log"),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column(
            "actor_type", sa.String(16), nullable=False,
            comment="user | api_key | device | system",
        ),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_name", sa.String(254), nullable=False),
        sa.Column("action", sa.String(64), nullable=False, comment="e.g. device.update"),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(200), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_org_id_at", "audit_log", ["org_id", "at", "id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("device_tokens")
    op.drop_table("device_certificates")
    op.drop_table("certificate_authorities")
    with op.batch_alter_table("devices") as batch:
        batch.drop_index("ix_devices_cohort_id")
        batch.drop_index("ix_devices_product_id")
        batch.drop_constraint("fk_devices_cohort_id_cohorts", type_="foreignkey")
        batch.drop_constraint("fk_devices_product_id_products", type_="foreignkey")
        for column in (
            "updated_at", "revoked_at", "description", "attributes", "labels",
            "cohort_id", "product_id",
        ):
            batch.drop_column(column)
    op.drop_table("cohorts")
    op.drop_table("products")
    with op.batch_alter_table("api_keys") as batch:
        for column in ("created_by", "rate_limit", "expires_at"):
            batch.drop_column(column)
    op.drop_table("user_sessions")
    op.drop_table("users")
