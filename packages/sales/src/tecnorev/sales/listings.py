"""Sales' collections, on the listing contract (``tecnorev.core.listing``).

An order page carries each order's items (``Children``): read by a second statement for
the whole page (two statements per page whatever its size), not one per order.
"""

from __future__ import annotations

from tecnorev.core.db import table_of
from tecnorev.core.listing import (
    Children,
    Listing,
    at_least,
    before,
    columns_of,
    equals,
    store_currency_column,
)
from tecnorev.core.web.types import BoolQuery, IdQuery, Moment
from tecnorev.sales.models import Coupon, Order, OrderItem, OrderStatus
from tecnorev.sales.schemas import CouponSummary, OrderSummary
from tecnorev.sales.service import orders_visible_to

_coupon = table_of(Coupon)
_order = table_of(Order)
_item = table_of(OrderItem)

_ORDER_FIELDS = (
    "id customer_id branch_id status coupon_id subtotal discount total idempotency_key "
    "created_at confirmed_at cancelled_at"
)
_COUPON_FIELDS = (
    "id code kind value valid_from valid_until usage_limit times_used is_active created_at "
    "updated_at"
)

coupons = Listing(
    "coupons",
    columns=columns_of(_coupon, _COUPON_FIELDS),
    item=CouponSummary,
    sorts=("id", "code"),
    unique=frozenset({"code"}),
    default_sort="id",
    filters=(equals("is_active", _coupon.c.is_active, BoolQuery, "usable or switched off"),),
)

orders = Listing(
    "orders",
    columns={**columns_of(_order, _ORDER_FIELDS), "currency": store_currency_column()},
    item=OrderSummary,
    sorts=("id", "created_at", "total"),
    default_sort="-created_at",
    filters=(
        equals("status", _order.c.status, OrderStatus, "in this state"),
        equals("branch_id", _order.c.branch_id, IdQuery, "placed at this branch"),
        equals("customer_id", _order.c.customer_id, IdQuery, "placed by this customer"),
        at_least(
            "created_from",
            _order.c.created_at,
            Moment,
            "placed at or after (ISO 8601 with a time zone)",
        ),
        before(
            "created_before",
            _order.c.created_at,
            Moment,
            "placed before (ISO 8601 with a time zone)",
        ),
    ),
    scopes={"viewer": orders_visible_to},  # a caller without orders:read_all
    children=Children(
        "items",
        parent=_item.c.order_id,
        columns=columns_of(_item, "product_id quantity unit_price line_total"),
        order_by=(_item.c.product_id,),
    ),
)
