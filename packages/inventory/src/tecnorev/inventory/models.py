"""Tables of the inventory module.

Stock only changes through movements: ``stock_entry.quantity`` always equals the sum of the
branch's movements for that product, and can never go negative.
"""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tecnorev.core.mixins import AuditMixin
from tecnorev.core.types import UTCDateTime, utcnow


class MovementReason(enum.StrEnum):
    RECEIPT = "RECEIPT"
    ADJUSTMENT = "ADJUSTMENT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    SALE = "SALE"
    SALE_CANCELLED = "SALE_CANCELLED"


class Branch(AuditMixin, table=True):
    __table_args__ = (sa.Index("ix_branch_name_id", "name", "id"),)  # the listing's sort

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=120)
    address: str = Field(default="", max_length=500)
    is_active: bool = Field(default=True)


class BranchStaff(SQLModel, table=True):
    """Which users work at which branch (owned here: auth cannot know branches)."""

    __tablename__ = "branch_staff"

    branch_id: int = Field(foreign_key="branch.id", ondelete="CASCADE", primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class StockEntry(AuditMixin, table=True):
    __tablename__ = "stock_entry"
    __table_args__ = (
        sa.UniqueConstraint("branch_id", "product_id"),
        sa.CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        sa.Index("ix_stock_entry_quantity_id", "quantity", "id"),  # the listing's sort
    )

    id: int | None = Field(default=None, primary_key=True)
    branch_id: int = Field(foreign_key="branch.id", ondelete="RESTRICT")
    product_id: int = Field(foreign_key="product.id", ondelete="RESTRICT", index=True)
    quantity: int = Field(default=0)


class InventoryMovement(SQLModel, table=True):
    """An append-only ledger line: one signed change of one product's stock at one branch."""

    __tablename__ = "inventory_movement"
    __table_args__ = (
        sa.CheckConstraint("quantity_delta <> 0", name="quantity_delta_not_zero"),
        sa.Index("ix_inventory_movement_branch_product_id", "branch_id", "product_id", "id"),
        sa.Index("ix_inventory_movement_transfer_id", "transfer_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    branch_id: int = Field(foreign_key="branch.id", ondelete="RESTRICT")
    product_id: int = Field(foreign_key="product.id", ondelete="RESTRICT", index=True)
    quantity_delta: int
    reason: MovementReason = Field(
        sa_type=sa.Enum(
            MovementReason,
            name="movement_reason",
            native_enum=False,
            create_constraint=True,
            length=20,
        )
    )
    transfer_id: str | None = Field(default=None, max_length=32)
    reference: str = Field(default="", max_length=100)
    note: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_by_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
