"""Sales' collections, on the listing contract (``tecnorev.core.listing``).

An order page carries each order's items: read by a second statement for the whole page
(two statements per page whatever its size), not one per order.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from tecnorev.core.db import table_of
from tecnorev.core.direct import Direct
from tecnorev.core.listing import (
    Listing,
    at_least,
    before,
    columns_of,
    equals,
    money_text,
    store_currency_column,
)
from tecnorev.core.web.session import Connectable
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

_ITEMS = Direct(
    sa.select(
        _item.c.order_id,
        _item.c.product_id,
        _item.c.quantity,
        money_text(_item.c.unit_price),
        money_text(_item.c.line_total),
    )
    .where(_item.c.order_id.in_(sa.bindparam("order_ids", expanding=True)))
    .order_by(_item.c.order_id, _item.c.product_id)
)


def _with_items(session: Connectable, orders: list[dict[str, Any]]) -> None:
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    rows = _ITEMS.run(session.connection(), {"order_ids": [order["id"] for order in orders]})
    for order_id, product_id, quantity, unit_price, line_total in rows:
        found[order_id].append(
            {
                "product_id": product_id,
                "quantity": quantity,
                "unit_price": unit_price,
                "line_total": line_total,
            }
        )
    for order in orders:
        order["items"] = found.get(order["id"], [])


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
    expand=_with_items,
)
