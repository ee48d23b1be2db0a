"""listing indexes

The indexes the order listing sorts and filters by: ``(created_at, id)`` and ``(total, id)``,
and ``(branch_id, created_at, id)`` for a branch's orders of a day, each page one index range.  Built concurrently on PostgreSQL: writes to the tables go on meanwhile.

Revision ID: sales_2a9f4e6b8c1d
Revises: sales_178394af59bf
Create Date: 2026-12-06 15:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

from tecnorev.migrate.helpers import create_index_concurrently, drop_index_concurrently

revision: str = "sales_2a9f4e6b8c1d"
down_revision: str | Sequence[str] | None = "sales_178394af59bf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_order_created_at_id", "order", ["created_at", "id"]),
    ("ix_order_total_id", "order", ["total", "id"]),
    ("ix_order_branch_created_at_id", "order", ["branch_id", "created_at", "id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        create_index_concurrently(op, name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        drop_index_concurrently(op, name, table)
