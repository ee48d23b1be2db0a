"""listing indexes

The indexes the inventory's listings sort by: branches by ``(name, id)``, stock rows by
``(quantity, id)`` (the low-stock view), each page one index range.  Built concurrently on PostgreSQL: writes to the tables go on meanwhile.

Revision ID: inventory_7e3d91c4a2f0
Revises: inventory_41bb73693ae7
Create Date: 2026-12-06 15:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

from tecnorev.migrate.helpers import create_index_concurrently, drop_index_concurrently

revision: str = "inventory_7e3d91c4a2f0"
down_revision: str | Sequence[str] | None = "inventory_41bb73693ae7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_branch_name_id", "branch", ["name", "id"]),
    ("ix_stock_entry_quantity_id", "stock_entry", ["quantity", "id"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        create_index_concurrently(op, name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        drop_index_concurrently(op, name, table)
