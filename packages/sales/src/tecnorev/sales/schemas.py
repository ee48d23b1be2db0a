"""Request and response models of the sales endpoints (no tables)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
)
from typing_extensions import TypedDict

from tecnorev.core.settings import store_currency
from tecnorev.core.web.types import (
    INT4_MAX,
    CurrencyOut,
    Id,
    Moment,
    Money,
    MoneyOut,
    Patch,
    Quantity,
    StrictBool,
)
from tecnorev.sales.models import CouponKind, Order, OrderItem, OrderStatus

if TYPE_CHECKING:
    from tecnorev.sales.placed import NewLine, NewOrder

MAX_ORDER_LINES = 100

# Codes are stored upper-cased, so matching them ignores case.
CouponCode = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=40,
        strip_whitespace=True,
        to_upper=True,
        pattern=r"^[A-Za-z0-9_-]+$",
    ),
]
UsageLimit = Annotated[int, Strict(), Field(ge=1, le=INT4_MAX)]


class CouponCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: CouponCode
    kind: CouponKind
    value: Money
    valid_from: Moment | None = None
    valid_until: Moment | None = None
    usage_limit: UsageLimit | None = None
    is_active: StrictBool = True


class CouponUpdate(Patch):
    """Only the fields sent are changed; ``null`` lifts a limit or an end date."""

    _nullable: ClassVar[frozenset[str]] = frozenset({"usage_limit", "valid_until"})

    is_active: StrictBool | None = None
    usage_limit: UsageLimit | None = None
    valid_until: Moment | None = None


class CouponPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    kind: CouponKind
    value: MoneyOut
    valid_from: datetime
    valid_until: datetime | None
    usage_limit: int | None
    times_used: int
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CouponSummary(TypedDict):
    id: int
    code: str
    kind: CouponKind
    value: MoneyOut
    valid_from: datetime
    valid_until: datetime | None
    usage_limit: int | None
    times_used: int
    is_active: bool
    created_at: datetime
    updated_at: datetime


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: Id
    quantity: Quantity


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch_id: Id
    items: list[OrderLineIn] = Field(min_length=1, max_length=MAX_ORDER_LINES)
    coupon_code: CouponCode | None = None


class OrderItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: int
    quantity: int
    unit_price: MoneyOut
    line_total: MoneyOut


class OrderPublic(BaseModel):
    id: int
    customer_id: int
    branch_id: int
    status: OrderStatus
    coupon_id: int | None
    subtotal: MoneyOut
    discount: MoneyOut
    total: MoneyOut
    currency: CurrencyOut
    idempotency_key: str | None
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    items: list[OrderItemPublic]


class OrderItemSummary(TypedDict):
    product_id: int
    quantity: int
    unit_price: MoneyOut
    line_total: MoneyOut


class OrderSummary(TypedDict):
    """An order as a page lists it: what ``OrderPublic`` shows."""

    id: int
    customer_id: int
    branch_id: int
    status: OrderStatus
    coupon_id: int | None
    subtotal: MoneyOut
    discount: MoneyOut
    total: MoneyOut
    currency: CurrencyOut
    idempotency_key: str | None
    created_at: datetime
    confirmed_at: datetime | None
    cancelled_at: datetime | None
    items: list[OrderItemSummary]


def order_public(order: Order | NewOrder, items: Iterable[OrderItem | NewLine]) -> OrderPublic:
    assert order.id is not None  # a stored order: its row has an id
    return OrderPublic(
        id=order.id,
        customer_id=order.customer_id,
        branch_id=order.branch_id,
        status=order.status,
        coupon_id=order.coupon_id,
        subtotal=order.subtotal,
        discount=order.discount,
        total=order.total,
        currency=store_currency(),
        idempotency_key=order.idempotency_key,
        created_at=order.created_at,
        confirmed_at=order.confirmed_at,
        cancelled_at=order.cancelled_at,
        items=[OrderItemPublic.model_validate(item) for item in items],
    )
