"""Tables of the payments module."""

from __future__ import annotations

import enum
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field

from tecnorev.core.mixins import AuditMixin


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"


class Payment(AuditMixin, table=True):
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.UniqueConstraint("provider", "provider_reference"),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", ondelete="RESTRICT", index=True)
    amount: Decimal = Field(sa_type=sa.Numeric(12, 2))
    currency: str = Field(default="USD", max_length=3)
    status: PaymentStatus = Field(
        default=PaymentStatus.PENDING,
        sa_type=sa.Enum(
            PaymentStatus,
            name="payment_status",
            native_enum=False,
            create_constraint=True,
            length=10,
        ),
    )
    provider: str = Field(max_length=50)
    provider_reference: str = Field(max_length=128)
