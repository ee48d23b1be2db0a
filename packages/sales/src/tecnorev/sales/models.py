"""Tables of the sales module."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field

from tecnorev.core.mixins import AuditMixin
from tecnorev.core.types import UTCDateTime


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class CouponKind(enum.StrEnum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


class Coupon(AuditMixin, table=True):
    __table_args__ = (
        sa.CheckConstraint("value > 0", name="value_positive"),
        sa.CheckConstraint("kind <> 'PERCENT' OR value <= 100", name="percent_at_most_100"),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until > valid_from", name="validity_window"
        ),
        sa.CheckConstraint("times_used >= 0", name="times_used_not_negative"),
        sa.CheckConstraint(
            "usage_limit IS NULL OR times_used <= usage_limit", name="within_usage_limit"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=40, unique=True)
    kind: CouponKind = Field(
        sa_type=sa.Enum(
            CouponKind, name="coupon_kind", native_enum=False, create_constraint=True, length=10
        )
    )
    value: Decimal = Field(sa_type=sa.Numeric(12, 2))
    valid_from: datetime = Field(sa_type=UTCDateTime, nullable=False)
    valid_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    usage_limit: int | None = Field(default=None)
    times_used: int = Field(default=0)
    is_active: bool = Field(default=True)


class Order(AuditMixin, table=True):
    __tablename__ = "order"
    __table_args__ = (
        # Placing an order twice with the same key returns the first order.
        sa.UniqueConstraint("customer_id", "idempotency_key"),
        sa.CheckConstraint("subtotal >= 0", name="subtotal_not_negative"),
        sa.CheckConstraint("discount >= 0 AND discount <= subtotal", name="discount_in_range"),
        # round(): SQLite keeps NUMERIC as binary floating point, where 0.10 - 0.01 is not 0.09;
        # on PostgreSQL the arithmetic is exact and round() changes nothing.
        sa.CheckConstraint(
            "total = round(subtotal - discount, 2)", name="total_is_subtotal_less_discount"
        ),
        sa.Index("ix_order_customer_created", "customer_id", "created_at"),
        sa.Index("ix_order_status_created", "status", "created_at"),
        # the listing's sorts, and "today's orders at branch X"
        sa.Index("ix_order_created_at_id", "created_at", "id"),
        sa.Index("ix_order_total_id", "total", "id"),
        sa.Index("ix_order_branch_created_at_id", "branch_id", "created_at", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="user.id", ondelete="RESTRICT")
    branch_id: int = Field(foreign_key="branch.id", ondelete="RESTRICT", index=True)
    # A native PostgreSQL enum, as in the guide: its type is created and dropped with the table.
    # SQLite has no enum type: the CHECK constraint enforces the values there.
    status: OrderStatus = Field(
        default=OrderStatus.PENDING,
        sa_type=sa.Enum(OrderStatus, name="order_status", create_constraint=True),
    )
    coupon_id: int | None = Field(
        default=None, foreign_key="coupon.id", ondelete="RESTRICT", index=True
    )
    subtotal: Decimal = Field(default=Decimal("0.00"), sa_type=sa.Numeric(12, 2))
    discount: Decimal = Field(default=Decimal("0.00"), sa_type=sa.Numeric(12, 2))
    total: Decimal = Field(default=Decimal("0.00"), sa_type=sa.Numeric(12, 2))
    idempotency_key: str | None = Field(default=None, max_length=64)
    confirmed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OrderItem(AuditMixin, table=True):
    __tablename__ = "order_item"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "product_id"),
        sa.CheckConstraint("quantity > 0", name="quantity_positive"),
        sa.CheckConstraint("unit_price >= 0", name="unit_price_not_negative"),
        sa.CheckConstraint(
            "line_total = round(unit_price * quantity, 2)", name="line_total_matches"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", ondelete="CASCADE")
    product_id: int = Field(foreign_key="product.id", ondelete="RESTRICT", index=True)
    quantity: int
    # Price at the time of the order: later catalogue changes never rewrite history.
    unit_price: Decimal = Field(sa_type=sa.Numeric(12, 2))
    line_total: Decimal = Field(sa_type=sa.Numeric(14, 2))
