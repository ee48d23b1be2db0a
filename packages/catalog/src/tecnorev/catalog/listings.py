"""The catalog's collections, on the listing contract (``tecnorev.core.listing``).

Text search (``q``) matches a part of the name or the SKU, ignoring case.  On PostgreSQL a
trigram index (pg_trgm) on ``lower(name)`` and ``lower(sku)`` serves it for three
characters or more; on SQLite it is a scan of the table, which the embedded database's
sizes afford, and ``lower()`` folds ASCII letters only.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tecnorev.catalog.models import Category, Product, ProductImage
from tecnorev.catalog.schemas import CategorySummary, ImagePublic, ProductPublic, ProductSummary
from tecnorev.core.db import table_of
from tecnorev.core.listing import (
    Children,
    Filter,
    Listing,
    at_least,
    at_most,
    equals,
    item_of,
    mapped_columns,
    store_currency_column,
)
from tecnorev.core.web.types import BoolQuery, IdQuery, MoneyQuery, text

_category = table_of(Category)
_product = table_of(Product)
_image = table_of(ProductImage)


def subtree(root_id: Any) -> sa.CTE:
    """The ids of ``root_id`` (a value or a bound parameter) and all its descendants.
    UNION, not UNION ALL: it ends even on a loop that should never exist."""
    c = _category.c
    tree = sa.select(c.id).where(c.id == root_id).cte("subtree", recursive=True)
    child = _category.alias("child")
    return tree.union(sa.select(child.c.id).where(child.c.parent_id == tree.c.id))


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _matches(pattern: sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    p = _product.c
    return sa.or_(
        sa.func.lower(p.name).like(pattern, escape="\\"),
        sa.func.lower(p.sku).like(pattern, escape="\\"),
    )


categories = Listing(
    "categories",
    columns={
        "id": _category.c.id,
        "name": _category.c.name,
        "slug": _category.c.slug,
        "parent_id": _category.c.parent_id,
    },
    item=CategorySummary,
    sorts=("id", "name", "slug"),
    unique=frozenset({"slug"}),
    default_sort="name",
    filters=(equals("parent_id", _category.c.parent_id, IdQuery, "the children of this category"),),
)

_first_image = (
    sa.select(_image.c.url)
    .where(_image.c.product_id == _product.c.id)
    .order_by(_image.c.position)
    .limit(1)
    .scalar_subquery()
)

products = Listing(
    "products",
    columns={
        "id": _product.c.id,
        "sku": _product.c.sku,
        "name": _product.c.name,
        "price": _product.c.price,
        "currency": store_currency_column(),
        "is_active": _product.c.is_active,
        "category_id": _product.c.category_id,
        # one index probe per row ((product_id, position) is unique), in the page's statement
        "image_url": _first_image,
    },
    item=ProductSummary,
    sorts=("id", "sku", "name", "price"),
    unique=frozenset({"sku"}),
    default_sort="id",
    filters=(
        Filter(
            "category_id",
            IdQuery,
            lambda root: _product.c.category_id.in_(sa.select(subtree(root).c.id)),
            "this category and all its subcategories",
            type_=sa.Integer(),
        ),
        Filter(
            "q",
            text(100),
            _matches,
            "a part of the name or the SKU, ignoring case",
            bind=lambda q: "%" + escape_like(q.lower()) + "%",
            applies=bool,  # an empty search does not filter
            type_=sa.String(),
        ),
        equals(
            "is_active",
            _product.c.is_active,
            BoolQuery,
            "active (on sale) or not; callers without catalog:manage see active ones only",
        ),
        at_least("price_min", _product.c.price, MoneyQuery, "price from (inclusive)"),
        at_most("price_max", _product.c.price, MoneyQuery, "price up to (inclusive)"),
    ),
)

# One product with its images, read as the listings read (``GET /catalog/products/{id}``):
# two statements sent straight to the driver and one serialization, no ORM object.  Its
# fields are ``ProductPublic``'s and its columns the model's attributes: a release that adds a
# field or renames a column under one changes them here too.
_SHOWN = [name for name in ProductPublic.model_fields if name not in ("currency", "images")]
product = Listing(
    "product",
    columns={
        **mapped_columns(Product, _SHOWN[: _SHOWN.index("price") + 1]),
        "currency": store_currency_column(),
        **mapped_columns(Product, _SHOWN[_SHOWN.index("price") + 1 :]),
    },
    item=item_of(ProductPublic, images=list[item_of(ImagePublic)]),  # type: ignore[misc]
    sorts=("id",),
    default_sort="id",
    filters=(
        equals("id", _product.c.id, int, "this product"),
        equals("is_active", _product.c.is_active, bool, "active or not"),
    ),
    children=Children(
        "images",
        parent=_image.c.product_id,
        columns=mapped_columns(ProductImage, ImagePublic.model_fields),
        order_by=(_image.c.position,),  # unique per product
    ),
)
