"""Tables of the catalog module."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Field

from tecnorev.core.mixins import AuditMixin


class Category(AuditMixin, table=True):
    __table_args__ = (sa.Index("ix_category_name_id", "name", "id"),)  # the listing's sort

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=120)
    slug: str = Field(max_length=140, unique=True)
    parent_id: int | None = Field(
        default=None, foreign_key="category.id", ondelete="RESTRICT", index=True
    )


class Product(AuditMixin, table=True):
    __table_args__ = (
        sa.CheckConstraint("price >= 0", name="price_not_negative"),
        # Cursor pagination of the active catalogue, optionally within a category.
        sa.Index("ix_product_active_id", "is_active", "id"),
        sa.Index("ix_product_category_active_id", "category_id", "is_active", "id"),
        # the listing's sorts (keyset ranges of (field, id))
        sa.Index("ix_product_name_id", "name", "id"),
        sa.Index("ix_product_price_id", "price", "id"),
        # its text search on PostgreSQL: trigram indexes (pg_trgm) on lower(name) and
        # lower(sku), made by the migrations alone (no model describes an operator class on
        # an expression that every backend reflects back the same)
        {"info": {"migration_indexes": ("ix_product_name_trgm", "ix_product_sku_trgm")}},
    )

    id: int | None = Field(default=None, primary_key=True)
    sku: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    price: Decimal = Field(sa_type=sa.Numeric(12, 2))
    is_active: bool = Field(default=True)
    category_id: int | None = Field(default=None, foreign_key="category.id", ondelete="SET NULL")


class ProductImage(AuditMixin, table=True):
    __tablename__ = "product_image"
    __table_args__ = (
        sa.UniqueConstraint("product_id", "position"),
        sa.CheckConstraint("position >= 0", name="position_not_negative"),
    )

    id: int | None = Field(default=None, primary_key=True)
    product_id: int = Field(foreign_key="product.id", ondelete="CASCADE")
    url: str = Field(max_length=2048)
    alt_text: str = Field(default="", max_length=255)
    position: int = Field(default=0)
