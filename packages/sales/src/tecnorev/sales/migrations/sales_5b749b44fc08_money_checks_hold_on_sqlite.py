"""money checks hold on sqlite

SQLite keeps NUMERIC values as binary floating point, where 19.90 * 3 is 59.699999999999996
and 0.10 - 0.01 is 0.09000000000000001, so the exact CHECKs on an order's total and an item's
line total refused ordinary orders there.  Comparing with ``round(..., 2)`` holds on both
backends; on PostgreSQL numeric arithmetic is exact and ``round`` changes nothing.

PostgreSQL: the replacement is added NOT VALID, so no table is scanned under lock (every
existing row satisfies the exact CHECK it replaces, hence the rounded one too); the next
revision validates it without blocking writes.
SQLite: the tables are rebuilt (batch mode) from the definitions below, as the previous
revision left them, so the rebuild needs no reflection and ``--sql`` works offline too.  A
downgrade there fails if a row holds a total that only the rounded comparison accepts.

Revision ID: sales_5b749b44fc08
Revises: sales_4d5a76c56eb0
Create Date: 2026-11-24 13:22:37.405852
"""

from collections.abc import Sequence

import sqlalchemy as sa
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


def _audit_columns() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("updated_by_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
    ]


def _sqlite_tables(current: dict[str, str]) -> dict[str, sa.Table]:
    """``order`` and ``order_item`` as SQLite holds them, with ``current`` CHECK conditions."""
    metadata = sa.MetaData()
    for name in ("user", "branch", "coupon", "product"):  # referenced tables, ids only
        sa.Table(name, metadata, sa.Column("id", sa.Integer(), primary_key=True))
    order = sa.Table(
        "order",
        metadata,
        *_audit_columns(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("branch_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "PENDING",
                "CONFIRMED",
                "SHIPPED",
                "DELIVERED",
                "CANCELLED",
                name="order_status",
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("coupon_id", sa.Integer(), nullable=True),
        sa.Column("subtotal", sa.Numeric(12, 2), nullable=False),
        sa.Column("discount", sa.Numeric(12, 2), nullable=False),
        sa.Column("total", sa.Numeric(12, 2), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_order"),
        sa.CheckConstraint(
            "discount >= 0 AND discount <= subtotal", name="ck_order_discount_in_range"
        ),
        sa.CheckConstraint("subtotal >= 0", name="ck_order_subtotal_not_negative"),
        sa.CheckConstraint(current["order"], name="ck_order_total_is_subtotal_less_discount"),
        sa.ForeignKeyConstraint(
            ["branch_id"], ["branch.id"], name="fk_order_branch_id_branch", ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["coupon_id"], ["coupon.id"], name="fk_order_coupon_id_coupon", ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["user.id"], name="fk_order_customer_id_user", ondelete="RESTRICT"
        ),
        sa.UniqueConstraint(
            "customer_id", "idempotency_key", name="uq_order_customer_id_idempotency_key"
        ),
        sa.Index("ix_order_branch_id", "branch_id"),
        sa.Index("ix_order_coupon_id", "coupon_id"),
        sa.Index("ix_order_customer_created", "customer_id", "created_at"),
        sa.Index("ix_order_status_created", "status", "created_at"),
    )
    item = sa.Table(
        "order_item",
        metadata,
        *_audit_columns(),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
        sa.Column("line_total", sa.Numeric(14, 2), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_item"),
        sa.CheckConstraint(current["order_item"], name="ck_order_item_line_total_matches"),
        sa.CheckConstraint("quantity > 0", name="ck_order_item_quantity_positive"),
        sa.CheckConstraint("unit_price >= 0", name="ck_order_item_unit_price_not_negative"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["order.id"], name="fk_order_item_order_id_order", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["product.id"],
            name="fk_order_item_product_id_product",
            ondelete="RESTRICT",
        ),
        sa.UniqueConstraint("order_id", "product_id", name="uq_order_item_order_id_product_id"),
        sa.Index("ix_order_item_product_id", "product_id"),
    )
    _name_audit_keys(order)
    _name_audit_keys(item)
    return {"order": order, "order_item": item}


def _name_audit_keys(table: sa.Table) -> None:
    for column in ("created_by_id", "updated_by_id"):
        (key,) = table.c[column].foreign_keys
        key.constraint.name = f"fk_{table.name}_{column}_user"
        key.ondelete = key.constraint.ondelete = "SET NULL"


def _replace(
    table: str, name: str, condition: str, *, not_valid: bool, current: dict[str, str]
) -> None:
    if op.get_context().dialect.name == "postgresql":
        op.drop_constraint(op.f(name), table, type_="check")
        op.create_check_constraint(op.f(name), table, condition, postgresql_not_valid=not_valid)
        return
    copy_from = _sqlite_tables(current)[table]
    with op.batch_alter_table(table, copy_from=copy_from, recreate="always") as batch_op:
        batch_op.drop_constraint(op.f(name), type_="check")
        batch_op.create_check_constraint(op.f(name), condition)


def upgrade() -> None:
    current = {table: exact for table, _name, exact, _rounded in CHECKS}
    for table, name, _exact, rounded in CHECKS:
        _replace(table, name, rounded, not_valid=True, current=current)


def downgrade() -> None:
    # Back to exactly the previous state: validated constraints (this scans the tables).
    current = {table: rounded for table, _name, _exact, rounded in CHECKS}
    for table, name, exact, _rounded in reversed(CHECKS):
        _replace(table, name, exact, not_valid=False, current=current)
