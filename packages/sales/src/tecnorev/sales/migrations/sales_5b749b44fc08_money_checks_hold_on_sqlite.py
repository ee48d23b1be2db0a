"""money checks hold on sqlite

SQLite keeps NUMERIC values as binary floating point, where 19.90 * 3 is 59.699999999999996
and 0.10 - 0.01 is 0.09000000000000001, so the exact CHECKs on an order's total and an item's
line total refused ordinary orders there.  Comparing with ``round(..., 2)`` holds on both
backends; on PostgreSQL numeric arithmetic is exact and ``round`` changes nothing.

PostgreSQL: the replacement is added NOT VALID, so no table is scanned under lock (every
existing row satisfies the exact CHECK it replaces, hence the rounded one too); the next
revision validates it without blocking writes.
SQLite: the tables are rebuilt (batch mode).  A downgrade there fails if a row holds a total
that only the rounded comparison accepts.

Revision ID: sales_5b749b44fc08
Revises: sales_4d5a76c56eb0
Create Date: 2026-11-24 13:22:37.405852
"""

from collections.abc import Sequence

from alembic import op

revision: str = "sales_5b749b44fc08"
down_revision: str | Sequence[str] | None = "sales_4d5a76c56eb0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, constraint, exact condition, rounded condition)
CHECKS = [
    (
        "order",
        "ck_order_total_is_subtotal_less_discount",
        "total = subtotal - discount",
        "total = round(subtotal - discount, 2)",
    ),
    (
        "order_item",
        "ck_order_item_line_total_matches",
        "line_total = unit_price * quantity",
        "line_total = round(unit_price * quantity, 2)",
    ),
]


def _replace(table: str, name: str, condition: str, *, not_valid: bool) -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, condition, postgresql_not_valid=not_valid)
        return
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(op.f(name), type_="check")
        batch_op.create_check_constraint(op.f(name), condition)


def upgrade() -> None:
    for table, name, _exact, rounded in CHECKS:
        _replace(table, name, rounded, not_valid=True)


def downgrade() -> None:
    # Back to exactly the previous state: validated constraints (this scans the tables).
    for table, name, exact, _rounded in reversed(CHECKS):
        _replace(table, name, exact, not_valid=False)
