"""Tables of the logistics module."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field

from tecnorev.core.mixins import AuditMixin
from tecnorev.core.types import UTCDateTime


class ShipmentStatus(enum.StrEnum):
    PENDING = "PENDING"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class Shipment(AuditMixin, table=True):
    __table_args__ = (
        sa.UniqueConstraint("carrier", "tracking_number"),
        sa.CheckConstraint(
            "delivered_at IS NULL OR (shipped_at IS NOT NULL AND delivered_at >= shipped_at)",
            name="delivered_after_shipped",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="order.id", ondelete="RESTRICT", index=True)
    carrier: str = Field(max_length=100)
    tracking_number: str = Field(max_length=100)
    status: ShipmentStatus = Field(
        default=ShipmentStatus.PENDING,
        sa_type=sa.Enum(
            ShipmentStatus,
            name="shipment_status",
            native_enum=False,
            create_constraint=True,
            length=12,
        ),
    )
    shipped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
