"""What order placement wrote, as plain records: the service returns them and the schemas render
them, so neither imports the other for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tecnorev.sales.models import Order, OrderItem, OrderStatus


@dataclass(frozen=True, slots=True)
class NewOrder:
    """An order as placement just wrote it: the fields its response shows, without the cost
    of an ORM object nobody will change."""

    id: int
    customer_id: int
    branch_id: int
    subtotal: Decimal
    discount: Decimal
    total: Decimal
    coupon_id: int | None
    idempotency_key: str | None
    created_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    confirmed_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewLine:
    product_id: int
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True)
class PlacedOrder:
    order: Order | NewOrder
    items: Sequence[OrderItem | NewLine]
    # True when the idempotency key had already placed this order: nothing new was stored.
    replayed: bool = False
