"""create the outbox: one row per event and subscriber, with its delivery state

Revision ID: core_6c58470bb045
Revises:
Create Date: 2026-12-06 07:11:18.849526
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "core_6c58470bb045"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("core",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tecnorev_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False),
        sa.Column("subscriber", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "dead",
                name="outbox_status",
                native_enum=False,
                create_constraint=True,
                length=10,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tecnorev_outbox")),
    )
    op.create_index("ix_tecnorev_outbox_due", "tecnorev_outbox", ["status", "available_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_tecnorev_outbox_due", table_name="tecnorev_outbox")
    op.drop_table("tecnorev_outbox")
