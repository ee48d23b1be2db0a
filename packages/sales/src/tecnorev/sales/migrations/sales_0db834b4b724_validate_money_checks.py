"""validate money checks

PostgreSQL: validate the CHECKs the previous revision added NOT VALID.  VALIDATE scans the
tables without blocking writes, so it runs in a revision (a transaction) of its own, after the
one that took the brief exclusive lock to swap the constraints.  SQLite has nothing to do.

Revision ID: sales_0db834b4b724
Revises: sales_5b749b44fc08
Create Date: 2026-11-24 13:24:37.448251
"""

from collections.abc import Sequence

from alembic import op

revision: str = "sales_0db834b4b724"
down_revision: str | Sequence[str] | None = "sales_5b749b44fc08"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECKS = [
    ("order", "ck_order_total_is_subtotal_less_discount"),
    ("order_item", "ck_order_item_line_total_matches"),
]


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table, name in CHECKS:
        op.execute(f'ALTER TABLE "{table}" VALIDATE CONSTRAINT {name}')


def downgrade() -> None:
    # A validated constraint is what the previous revision's downgrade replaces.
    pass
