"""The catalog endpoints: reading is public, every change needs ``catalog:manage``.

Inactive products are visible only to callers holding ``catalog:manage``; to anyone else
they do not exist (404).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Response, status

from tecnorev.auth.deps import OptionalCaller, OptionalUser, Principal, require_permission
from tecnorev.catalog import listings, permissions, service
from tecnorev.catalog.errors import ProductNotFound
from tecnorev.catalog.models import Product
from tecnorev.catalog.schemas import (
    CategoryCreate,
    CategoryPublic,
    CategoryUpdate,
    ImageCreate,
    ImageOrder,
    ImagePublic,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
)
from tecnorev.core.errors import NotAuthenticated, PermissionDenied
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, ReadSessionDep, Router, SessionDep
from tecnorev.core.web.types import IdPath

router = Router(prefix="/catalog")

Manager = Annotated[Principal, require_permission(permissions.CATALOG_MANAGE)]


def _manages(user: Principal | None) -> bool:
    return user is not None and user.can(permissions.CATALOG_MANAGE)


# --- categories --------------------------------------------------------------------------


@router.get(
    "/categories",
    response_model=listings.categories.page_type,
    summary="a page of categories (the tree, flat: rebuild it from parent_id)",
)
async def list_categories(
    reader: ReaderDep,
    query: Annotated[ListingQuery, Depends(listings.categories.query)],
) -> Response:
    return await listings.categories.response(reader, query)


@router.get("/categories/{category_id}")
def get_category(session: ReadSessionDep, category_id: IdPath) -> CategoryPublic:
    return CategoryPublic.model_validate(service.get_category(session, category_id))


@router.post("/categories", status_code=status.HTTP_201_CREATED)
def create_category(session: SessionDep, user: Manager, body: CategoryCreate) -> CategoryPublic:
    category = service.create_category(session, **body.model_dump(), author_id=user.id)
    return CategoryPublic.model_validate(category)


@router.patch("/categories/{category_id}")
def update_category(
    session: SessionDep, user: Manager, category_id: IdPath, body: CategoryUpdate
) -> CategoryPublic:
    category = service.update_category(
        session, category_id, changes=body.changes(), author_id=user.id
    )
    return CategoryPublic.model_validate(category)


@router.delete("/categories/{category_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_category(session: SessionDep, _user: Manager, category_id: IdPath) -> None:
    service.delete_category(session, category_id)


# --- products ----------------------------------------------------------------------------


@router.get("/products", response_model=listings.products.page_type, summary="a page of products")
async def list_products(
    reader: ReaderDep,
    caller: OptionalCaller,
    query: Annotated[ListingQuery, Depends(listings.products.query)],
) -> Response:
    def page() -> bytes:
        visible = _visible_products(caller.principal(reader), query)
        return listings.products.page_json(reader, visible)

    return await read_page(page, on=reader)


def _visible_products(user: Principal | None, query: ListingQuery) -> ListingQuery:
    """Inactive products are for catalogue managers; anyone lists the active ones."""
    if _manages(user):
        return query
    if query.filters.get("is_active") is False:
        if user is None:
            raise NotAuthenticated("log in to list inactive products")
        raise PermissionDenied(f"listing inactive products requires {permissions.CATALOG_MANAGE!r}")
    return replace(query, filters={**query.filters, "is_active": True})


@router.get("/products/{product_id}", response_model=ProductPublic)
async def get_product(reader: ReaderDep, caller: OptionalCaller, product_id: IdPath) -> Response:
    def read() -> bytes:
        shown = {"id": product_id}
        if not _manages(caller.principal(reader)):
            shown["is_active"] = True
        found = listings.product.one_json(reader, shown)
        if found is None:
            raise ProductNotFound(f"there is no product {product_id}")
        return found

    return await read_page(read, on=reader)


@router.post("/products", status_code=status.HTTP_201_CREATED)
def create_product(session: SessionDep, user: Manager, body: ProductCreate) -> ProductPublic:
    product = service.create_product(session, **body.model_dump(), author_id=user.id)
    return _product_public(product, [])


@router.patch(
    "/products/{product_id}", summary="change a product; is_active=false takes it off sale"
)
def update_product(
    session: SessionDep, user: Manager, product_id: IdPath, body: ProductUpdate
) -> ProductPublic:
    product = service.update_product(session, product_id, changes=body.changes(), author_id=user.id)
    return _product_public(product, service.list_images(session, product_id, include_inactive=True))


# --- images ------------------------------------------------------------------------------


@router.get("/products/{product_id}/images", summary="a product's images, in order")
def list_images(
    session: ReadSessionDep, user: OptionalUser, product_id: IdPath
) -> list[ImagePublic]:
    images = service.list_images(session, product_id, include_inactive=_manages(user))
    return [ImagePublic.model_validate(image) for image in images]


@router.post("/products/{product_id}/images", status_code=status.HTTP_201_CREATED)
def add_image(
    session: SessionDep, user: Manager, product_id: IdPath, body: ImageCreate
) -> ImagePublic:
    image = service.add_image(session, product_id, **body.model_dump(), author_id=user.id)
    return ImagePublic.model_validate(image)


@router.put(
    "/products/{product_id}/images/order",
    summary="put the product's images in the order given (every image, once)",
)
def reorder_images(
    session: SessionDep, user: Manager, product_id: IdPath, body: ImageOrder
) -> list[ImagePublic]:
    images = service.reorder_images(session, product_id, body.image_ids, author_id=user.id)
    return [ImagePublic.model_validate(image) for image in images]


@router.delete(
    "/products/{product_id}/images/{image_id:digits}", status_code=status.HTTP_204_NO_CONTENT
)
def delete_image(session: SessionDep, user: Manager, product_id: IdPath, image_id: IdPath) -> None:
    service.delete_image(session, product_id, image_id, author_id=user.id)


def _product_public(product: Product, images: Iterable[Any]) -> ProductPublic:
    return ProductPublic(
        **product.model_dump(include=_PRODUCT_FIELDS),
        images=[ImagePublic.model_validate(image) for image in images],
    )


_PRODUCT_FIELDS = set(ProductPublic.model_fields) - {"images"}
