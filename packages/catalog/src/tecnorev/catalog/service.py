"""Catalog rules: the category tree, products and their ordered images (the listings are in
``tecnorev.catalog.listings``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.catalog.errors import (
    CategoryCycle,
    CategoryInUse,
    CategoryNotFound,
    ImageNotFound,
    ImageOrderMismatch,
    InvalidPrice,
    ProductNotFound,
    SkuTaken,
    SlugTaken,
    UnknownCategory,
)
from tecnorev.catalog.listings import subtree
from tecnorev.catalog.models import Category, Product, ProductImage
from tecnorev.core.db import table_of
from tecnorev.core.direct import Direct
from tecnorev.core.errors import DomainError

_category = table_of(Category)
_product = table_of(Product)
_image = table_of(ProductImage)

# Serialises moves inside the category tree on PostgreSQL: two concurrent moves could each
# pass the cycle check and together close a loop (A under B while B goes under A).
_TREE_LOCK_KEY = 0x7465636E_63617431  # "tecncat1"


class ProductRow(NamedTuple):
    """What another module needs of a product to sell it."""

    id: int
    sku: str
    name: str
    price: Decimal
    is_active: bool


# --- categories --------------------------------------------------------------------------


def get_category(session: Session, category_id: int) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise CategoryNotFound(f"there is no category {category_id}")
    return category


def create_category(
    session: Session,
    *,
    name: str,
    slug: str,
    parent_id: int | None = None,
    author_id: int | None = None,
) -> Category:
    """Raises ``UnknownCategory`` (no such parent) or ``SlugTaken``."""
    if parent_id is not None:
        _require_category(session, parent_id)
    category = Category(
        name=name, slug=slug, parent_id=parent_id, created_by_id=author_id, updated_by_id=author_id
    )
    session.add(category)
    _flush(session, "category", "slug", SlugTaken(f"the slug {slug!r} is already used"))
    return category


def update_category(
    session: Session,
    category_id: int,
    *,
    changes: Mapping[str, Any],
    author_id: int | None = None,
) -> Category:
    """Change ``name``, ``slug`` or ``parent_id`` (``None``: top level).

    Raises ``CategoryNotFound``, ``UnknownCategory``, ``CategoryCycle`` (the new parent is the
    category itself or one of its descendants) or ``SlugTaken``.
    """
    category = get_category(session, category_id)
    parent_id = changes.get("parent_id", category.parent_id)
    if parent_id is not None and parent_id != category.parent_id:
        _lock_tree(session)
        _require_category(session, parent_id)
        if _in_subtree(session, root_id=category_id, candidate_id=parent_id):
            raise CategoryCycle(
                f"category {category_id} cannot move under {parent_id}: "
                "that is the category itself or one of its descendants",
                details={"category_id": category_id, "parent_id": parent_id},
            )
    for field in ("name", "slug", "parent_id"):
        if field in changes:
            setattr(category, field, changes[field])
    category.updated_by_id = author_id
    _flush(session, "category", "slug", SlugTaken(f"the slug {category.slug!r} is already used"))
    return category


def delete_category(session: Session, category_id: int) -> None:
    """Raises ``CategoryNotFound``, or ``CategoryInUse`` while subcategories or products (active
    or not) refer to it."""
    c, p = _category.c, _product.c
    # The row lock makes a concurrent product insert into this category wait for us and then
    # fail its foreign key, instead of losing its category to ON DELETE SET NULL.
    found = session.execute(
        sa.select(c.id).where(c.id == category_id).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise CategoryNotFound(f"there is no category {category_id}")
    children, products = session.execute(
        sa.select(
            sa.exists().where(c.parent_id == category_id),
            sa.exists().where(p.category_id == category_id),
        )
    ).one()
    if children or products:
        what = [w for w, used in (("subcategories", children), ("products", products)) if used]
        raise CategoryInUse(
            f"category {category_id} still has {' and '.join(what)}",
            details={"children": bool(children), "products": bool(products)},
        )
    session.execute(sa.delete(_category).where(c.id == category_id))


def _require_category(session: Session, category_id: int) -> None:
    found = session.execute(
        sa.select(_category.c.id).where(_category.c.id == category_id)
    ).scalar_one_or_none()
    if found is None:
        raise UnknownCategory(
            f"there is no category {category_id}", details={"category_id": category_id}
        )


def _in_subtree(session: Session, *, root_id: int, candidate_id: int) -> bool:
    tree = subtree(root_id)
    return (
        session.execute(sa.select(tree.c.id).where(tree.c.id == candidate_id).limit(1)).first()
        is not None
    )


def _lock_tree(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(_TREE_LOCK_KEY)))
    # SQLite has one writer at a time: a second mover fails with "database is locked".


# --- products ----------------------------------------------------------------------------


def create_product(
    session: Session,
    *,
    sku: str,
    name: str,
    price: Decimal,
    description: str = "",
    is_active: bool = True,
    category_id: int | None = None,
    author_id: int | None = None,
) -> Product:
    """Raises ``UnknownCategory`` or ``SkuTaken``."""
    if category_id is not None:
        _require_category(session, category_id)
    product = Product(
        sku=sku,
        name=name,
        description=description,
        price=_cents(price),
        is_active=is_active,
        category_id=category_id,
        created_by_id=author_id,
        updated_by_id=author_id,
    )
    session.add(product)
    _flush(session, "product", "sku", SkuTaken(f"the SKU {sku!r} is already used"))
    return product


def get_product(session: Session, product_id: int, *, include_inactive: bool = False) -> Product:
    """Raises ``ProductNotFound``, also for an inactive product unless ``include_inactive``."""
    product = session.get(Product, product_id)
    if product is None or not (product.is_active or include_inactive):
        raise ProductNotFound(f"there is no product {product_id}")
    return product


_PRODUCT_CHANGES = ("name", "description", "price", "is_active", "category_id")


def update_product(
    session: Session,
    product_id: int,
    *,
    changes: Mapping[str, Any],
    author_id: int | None = None,
) -> Product:
    """Change ``name``, ``description``, ``price``, ``is_active`` or ``category_id`` (``None``:
    uncategorised).  Deactivating is how a product leaves the catalogue: orders keep
    referring to it, so it is never deleted.

    Raises ``ProductNotFound`` or ``UnknownCategory``.
    """
    product = get_product(session, product_id, include_inactive=True)
    values = {f: changes[f] for f in _PRODUCT_CHANGES if f in changes}
    if "price" in values:
        values["price"] = _cents(values["price"])
    category_id = values.get("category_id")
    if category_id is not None and category_id != product.category_id:
        _require_category(session, category_id)
    for field, value in values.items():
        setattr(product, field, value)
    product.updated_by_id = author_id
    session.flush()
    return product


def _cents(price: Decimal) -> Decimal:
    """The price as the column stores it (``12.5`` reads back ``12.50``).  Raises
    ``InvalidPrice`` rather than rounding a price or storing a negative one."""
    if (
        not isinstance(price, Decimal)
        or not price.is_finite()
        or not 0 <= price <= _MAX_PRICE
        or price.quantize(_CENT) != price
    ):
        raise InvalidPrice(f"a price is an amount from 0 to {_MAX_PRICE} with at most two decimals")
    return price.quantize(_CENT)


_CENT = Decimal("0.01")
_MAX_PRICE = Decimal("9999999999.99")  # Numeric(12, 2)


def get_active_products(
    session: Session, ids: Iterable[int], *, include_inactive: bool = False
) -> dict[int, ProductRow]:
    """The products among ``ids`` that can be sold, by id, in one query; ids that name no
    product (or an inactive one) are absent.  ``include_inactive`` returns inactive ones too
    (see ``is_active``), for a caller that tells "inactive" apart from "unknown"."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = _PRODUCTS_ANY if include_inactive else _PRODUCTS_ACTIVE
    rows = query.run(session.connection(), {"p_ids": wanted})
    return {row[0]: ProductRow(*row) for row in rows}


# built once (the ids are an expanding parameter): order placement reads prices on every call
_PRODUCTS = sa.select(
    _product.c.id, _product.c.sku, _product.c.name, _product.c.price, _product.c.is_active
).where(_product.c.id.in_(sa.bindparam("p_ids", expanding=True)))
_PRODUCTS_ANY = Direct(_PRODUCTS)
_PRODUCTS_ACTIVE = Direct(_PRODUCTS.where(_product.c.is_active == sa.true()))


# --- images ------------------------------------------------------------------------------
# A product's images are numbered 0..n-1 with no gaps; every change renumbers in place.


def list_images(
    session: Session, product_id: int, *, include_inactive: bool = False
) -> Sequence[sa.Row[Any]]:
    """The product's images by position.  Raises ``ProductNotFound`` (see ``get_product``)."""
    get_product(session, product_id, include_inactive=include_inactive)
    return _images(session, product_id)


def add_image(
    session: Session,
    product_id: int,
    *,
    url: str,
    alt_text: str = "",
    position: int | None = None,
    author_id: int | None = None,
) -> ProductImage:
    """Insert an image at ``position`` (images from there move one place down); left out or
    past the end, it goes last.  Raises ``ProductNotFound``."""
    _lock_product(session, product_id)
    current = _images(session, product_id)
    positions = {row.id: row.position for row in current}
    image = ProductImage(
        product_id=product_id,
        url=url,
        alt_text=alt_text,
        position=max(positions.values(), default=-1) + 1,
        created_by_id=author_id,
        updated_by_id=author_id,
    )
    session.add(image)
    session.flush()
    if position is not None and position < len(current):
        assert image.id is not None  # set by the flush
        order = [row.id for row in current]
        order.insert(position, image.id)
        _renumber(session, {**positions, image.id: image.position}, order, author_id=author_id)
        session.refresh(image)
    return image


def reorder_images(
    session: Session,
    product_id: int,
    image_ids: Sequence[int],
    *,
    author_id: int | None = None,
) -> Sequence[sa.Row[Any]]:
    """Give the product's images the order of ``image_ids``, which must list each of them
    exactly once.  Raises ``ProductNotFound`` or ``ImageOrderMismatch``."""
    _lock_product(session, product_id)
    current = _images(session, product_id)
    known = {row.id for row in current}
    wanted = Counter(image_ids)
    duplicated = sorted(i for i, times in wanted.items() if times > 1)
    missing, unknown = sorted(known - wanted.keys()), sorted(wanted.keys() - known)
    if missing or unknown or duplicated:
        raise ImageOrderMismatch(
            "list every image of the product exactly once",
            details={"missing": missing, "unknown": unknown, "duplicated": duplicated},
        )
    positions = {row.id: row.position for row in current}
    _renumber(session, positions, image_ids, author_id=author_id)
    return _images(session, product_id)


def delete_image(
    session: Session, product_id: int, image_id: int, *, author_id: int | None = None
) -> None:
    """Remove an image; those after it move up.  Raises ``ProductNotFound`` or
    ``ImageNotFound`` (also for another product's image)."""
    _lock_product(session, product_id)
    current = _images(session, product_id)
    if not any(row.id == image_id for row in current):
        raise ImageNotFound(f"product {product_id} has no image {image_id}")
    session.execute(sa.delete(_image).where(_image.c.id == image_id))
    positions = {row.id: row.position for row in current if row.id != image_id}
    _renumber(session, positions, list(positions), author_id=author_id)


def _lock_product(session: Session, product_id: int) -> None:
    """Serialise changes to one product's images: they renumber each other's positions."""
    found = session.execute(
        sa.select(_product.c.id).where(_product.c.id == product_id).with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise ProductNotFound(f"there is no product {product_id}")


def _images(session: Session, product_id: int) -> Sequence[sa.Row[Any]]:
    i = _image.c
    return session.execute(
        sa.select(i.id, i.url, i.alt_text, i.position)
        .where(i.product_id == product_id)
        .order_by(i.position, i.id)
    ).all()


def _renumber(
    session: Session,
    positions: Mapping[int, int],
    order: Sequence[int],
    *,
    author_id: int | None,
) -> None:
    """Give the images of ``order`` (id → current position in ``positions``) the positions
    0..n-1.

    Both backends check the unique (product_id, position) row by row, so moving images
    straight to their places can collide midway.  The images that move first go past every
    position in use, then to their places, which no image keeps and none still holds.
    """
    moving = {
        image_id: target for target, image_id in enumerate(order) if positions[image_id] != target
    }
    if not moving:
        return
    i = _image.c
    clear = max(positions.values()) + 1
    session.execute(
        sa.update(_image).where(i.id.in_(list(moving))).values(position=i.position + clear)
    )
    session.execute(
        sa.update(_image)
        .where(i.id.in_(list(moving)))
        .values(position=sa.case(moving, value=i.id), updated_by_id=author_id)
    )


def _flush(session: Session, table: str, column: str, error: DomainError) -> None:
    """Flush, answering ``error`` when it breaks the unique constraint on ``table.column``
    (checked by the database, so two concurrent requests cannot both pass)."""
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        if _breaks_unique(exc, table, column):
            raise error from exc
        raise


def _breaks_unique(exc: sa.exc.IntegrityError, table: str, column: str) -> bool:
    orig = exc.orig
    if getattr(orig, "pgcode", None) == "23505":
        constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
        return constraint == f"uq_{table}_{column}"
    return str(orig) == f"UNIQUE constraint failed: {table}.{column}"
