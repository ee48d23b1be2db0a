"""Sales endpoints: coupons, placing and following orders, confirming and cancelling them."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Response

from tecnorev.auth.deps import Caller, CurrentUser, Principal, read_as, require_permission
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, Router, SessionDep, commit_rendered
from tecnorev.core.web.types import IdPath, Text
from tecnorev.sales import listings, permissions, service
from tecnorev.sales.schemas import (
    CouponCreate,
    CouponPublic,
    CouponUpdate,
    OrderCreate,
    OrderPublic,
    order_public,
)

router = Router(prefix="/sales")

ManagesCoupons = Annotated[Principal, require_permission(permissions.COUPONS_MANAGE)]
PlacesOrders = Annotated[Principal, require_permission(permissions.ORDERS_PLACE)]
ManagesOrders = Annotated[Principal, require_permission(permissions.ORDERS_MANAGE)]
IdempotencyKeyText = Annotated[str, Text(64, min_length=1)]
IdempotencyKey = Annotated[
    IdempotencyKeyText | None,
    Header(alias="Idempotency-Key", description="replaying a key returns the order it placed"),
]


def _viewer(user: Principal) -> service.Viewer:
    return service.Viewer(user.id, read_all=user.can(permissions.ORDERS_READ_ALL))


def _scope(viewer: service.Viewer) -> dict[str, int] | None:
    """The orders listing's scope for ``viewer``: none when they read every order."""
    return None if viewer.read_all else {"viewer": viewer.user_id}


@router.post("/coupons", status_code=201)
def create_coupon(body: CouponCreate, session: SessionDep, user: ManagesCoupons) -> CouponPublic:
    coupon = service.create_coupon(session, data=body, actor_id=user.id)
    return CouponPublic.model_validate(coupon)


@router.get("/coupons", response_model=listings.coupons.page_type, summary="a page of coupons")
async def list_coupons(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as(permissions.COUPONS_MANAGE)],
    query: Annotated[ListingQuery, Depends(listings.coupons.query)],
) -> Response:
    def page() -> bytes:
        caller.user(reader)
        return listings.coupons.page_json(reader, query)

    return await read_page(page, on=reader)


@router.get("/coupons/{coupon_id}")
def get_coupon(coupon_id: IdPath, session: SessionDep, _user: ManagesCoupons) -> CouponPublic:
    return CouponPublic.model_validate(service.get_coupon(session, coupon_id=coupon_id))


@router.patch("/coupons/{coupon_id}")
def update_coupon(
    coupon_id: IdPath, body: CouponUpdate, session: SessionDep, user: ManagesCoupons
) -> CouponPublic:
    coupon = service.update_coupon(session, coupon_id=coupon_id, changes=body, actor_id=user.id)
    return CouponPublic.model_validate(coupon)


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderPublic,
    responses={
        200: {
            "model": OrderPublic,
            "description": "the order this Idempotency-Key already placed (nothing new stored); "
            "the response carries Idempotency-Replayed: true",
        }
    },
)
def place_order(
    body: OrderCreate,
    session: SessionDep,
    user: PlacesOrders,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    placed = service.place_order(
        session,
        customer_id=user.id,
        branch_id=body.branch_id,
        items=[(line.product_id, line.quantity) for line in body.items],
        coupon_code=body.coupon_code,
        idempotency_key=idempotency_key,
    )
    # serialized here, once: a returned model would be validated again in another thread;
    # with the response rendered, the order is committed in this thread too
    payload = order_public(placed.order, placed.items).model_dump_json()
    commit_rendered(session)
    if placed.replayed:
        return Response(payload, 200, {"Idempotency-Replayed": "true"}, "application/json")
    return Response(payload, 201, media_type="application/json")


@router.get(
    "/orders",
    response_model=listings.orders.page_type,
    summary="a page of the orders the caller may read, with their items; newest first by default",
)
async def list_orders(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as()],
    query: Annotated[ListingQuery, Depends(listings.orders.query)],
) -> Response:
    def page() -> bytes:
        return listings.orders.page_json(reader, query, _scope(_viewer(caller.user(reader))))

    return await read_page(page, on=reader)


@router.get("/orders/{order_id}")
def get_order(order_id: IdPath, session: SessionDep, user: CurrentUser) -> OrderPublic:
    order, items = service.get_order(session, order_id=order_id, viewer=_viewer(user))
    return order_public(order, items)


@router.post("/orders/{order_id}/confirm")
def confirm_order(order_id: IdPath, session: SessionDep, user: ManagesOrders) -> OrderPublic:
    order = service.confirm_order(
        session, order_id=order_id, actor_id=user.id, viewer=_viewer(user)
    )
    return order_public(order, service.order_items(session, order_id=order_id))


@router.post("/orders/{order_id}/cancel")
def cancel_order(order_id: IdPath, session: SessionDep, user: PlacesOrders) -> OrderPublic:
    """Staff (``orders:manage``) cancel a PENDING or CONFIRMED order of their branches (any
    with ``orders:read_all``); a customer, staff included, cancels their own order while it is
    PENDING.  Both need ``orders:place``."""
    staff = user.can(permissions.ORDERS_MANAGE)
    order = service.cancel_order(
        session,
        order_id=order_id,
        actor_id=user.id,
        as_customer=user.id,
        viewer=_viewer(user) if staff else None,
    )
    return order_public(order, service.order_items(session, order_id=order_id))
