"""Sales rules: coupons, placing orders without overselling, and each order's life.

Placing an order is one unit of work: the idempotency key is claimed first, prices are
snapshotted, stock is taken through inventory (its conditional updates never oversell and
lock stock rows in ascending product order), then the coupon is counted with one conditional
``UPDATE``.  Every placement locks in that same order (stock rows, then the coupon), so two
placements can wait for each other but never deadlock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, NoReturn, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from tecnorev.catalog.service import get_active_products
from tecnorev.core.db import is_unique_violation, table_of
from tecnorev.core.direct import Direct
from tecnorev.core.errors import Conflict, DomainError, PermissionDenied
from tecnorev.core.events import publish
from tecnorev.core.metrics import count_on_commit
from tecnorev.core.types import utcnow
from tecnorev.inventory.errors import BranchInactive, InvalidQuantity, UnknownBranch
from tecnorev.inventory.listings import staff_branches
from tecnorev.inventory.models import MovementReason
from tecnorev.inventory.service import (
    branch_ids_of,
    branch_state,
    return_stock,
    withdraw_stock,
)
from tecnorev.sales.errors import (
    CouponCodeTaken,
    CouponExhausted,
    CouponExpired,
    CouponInactive,
    CouponNotFound,
    CouponNotYetValid,
    EmptyOrder,
    IdempotencyKeyReused,
    InvalidCouponValue,
    InvalidTransition,
    InvalidValidityWindow,
    OrderNotFound,
    OrderTooLarge,
    ProductUnavailable,
    UsageLimitBelowTimesUsed,
)
from tecnorev.sales.metrics import ORDERS_CANCELLED, ORDERS_PLACED
from tecnorev.sales.models import Coupon, CouponKind, Order, OrderItem, OrderStatus
from tecnorev.sales.placed import NewLine, NewOrder, PlacedOrder
from tecnorev.sales.schemas import CouponCreate, CouponUpdate

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
# The largest amounts the money columns hold: Numeric(12, 2) for orders, (14, 2) for lines.
MAX_ORDER_AMOUNT = Decimal("9999999999.99")
MAX_LINE_AMOUNT = Decimal("999999999999.99")

_order = table_of(Order)
_coupon = table_of(Coupon)

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.CONFIRMED, OrderStatus.CANCELLED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}


@dataclass(frozen=True)
class Viewer:
    """Who reads orders: their own always, their branches' as staff, all with ``read_all``.
    Staff act (confirm, cancel; ship and take payments downstream) only on the orders in their
    reach: their branches', all with ``read_all``; their own orders elsewhere they act on as
    customers do.  Downstream modules build one with their own ``<resource>:read_all``."""

    user_id: int
    read_all: bool = False


# --- coupons ---------------------------------------------------------------------------------


def create_coupon(session: Session, *, data: CouponCreate, actor_id: int | None = None) -> Coupon:
    """A new coupon; its code is stored upper-cased and is unique."""
    code = normalize_coupon_code(data.code)
    value = data.value.quantize(CENT)
    _check_coupon_value(data.kind, value)
    valid_from = _utc(data.valid_from) if data.valid_from else utcnow()
    valid_until = _utc(data.valid_until)
    _check_window(valid_from, valid_until)
    if session.exec(select(Coupon.id).where(Coupon.code == code)).first() is not None:
        raise CouponCodeTaken(f"a coupon with code {code!r} already exists")
    coupon = Coupon(
        code=code,
        kind=data.kind,
        value=value,
        valid_from=valid_from,
        valid_until=valid_until,
        usage_limit=data.usage_limit,
        is_active=data.is_active,
        created_by_id=actor_id,
        updated_by_id=actor_id,
    )
    session.add(coupon)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        # A concurrent creation of the same code won the race between the check and the insert.
        if is_unique_violation(exc):
            raise CouponCodeTaken(f"a coupon with code {code!r} already exists") from exc
        raise
    return coupon


def get_coupon(session: Session, *, coupon_id: int) -> Coupon:
    coupon = session.get(Coupon, coupon_id)
    if coupon is None:
        raise CouponNotFound(f"there is no coupon {coupon_id}")
    return coupon


def update_coupon(
    session: Session, *, coupon_id: int, changes: CouponUpdate, actor_id: int | None = None
) -> Coupon:
    """Change the fields sent in ``changes``.  The row is locked first so a usage limit is
    compared with a ``times_used`` that no placement can raise meanwhile."""
    coupon = session.exec(
        select(Coupon)
        .where(Coupon.id == coupon_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if coupon is None:
        raise CouponNotFound(f"there is no coupon {coupon_id}")
    sent = changes.model_fields_set
    if "usage_limit" in sent:
        if changes.usage_limit is not None and changes.usage_limit < coupon.times_used:
            raise UsageLimitBelowTimesUsed(
                f"coupon {coupon.code} was already used {coupon.times_used} times; "
                "its usage limit cannot be lower",
                details={"times_used": coupon.times_used, "usage_limit": changes.usage_limit},
            )
        coupon.usage_limit = changes.usage_limit
    if "valid_until" in sent:
        valid_until = _utc(changes.valid_until)
        _check_window(coupon.valid_from, valid_until)
        coupon.valid_until = valid_until
    if "is_active" in sent and changes.is_active is not None:
        coupon.is_active = changes.is_active
    coupon.updated_by_id = actor_id
    session.add(coupon)
    session.flush()
    return coupon


def normalize_coupon_code(code: str) -> str:
    return code.strip().upper()


@overload
def _utc(moment: datetime) -> datetime: ...
@overload
def _utc(moment: datetime | None) -> datetime | None: ...
def _utc(moment: datetime | None) -> datetime | None:
    # What the response shows is what is stored: timestamps are kept in UTC.
    return moment.astimezone(UTC) if moment is not None else None


def _check_coupon_value(kind: CouponKind, value: Decimal) -> None:
    if value <= 0:
        raise InvalidCouponValue("a coupon's value must be greater than zero")
    if kind is CouponKind.PERCENT and value > HUNDRED:
        raise InvalidCouponValue("a percentage coupon's value must be at most 100")


def _check_window(valid_from: datetime, valid_until: datetime | None) -> None:
    if valid_until is not None and valid_until <= valid_from:
        raise InvalidValidityWindow(
            "valid_until must be later than valid_from",
            details={"valid_from": valid_from.isoformat(), "valid_until": valid_until.isoformat()},
        )


# --- placing orders --------------------------------------------------------------------------


def place_order(
    session: Session,
    *,
    customer_id: int,
    branch_id: int,
    items: Iterable[tuple[int, int]],
    coupon_code: str | None = None,
    idempotency_key: str | None = None,
) -> PlacedOrder:
    """Place an order of ``items`` (product id, quantity) at a branch, all or nothing.

    Lines naming the same product are merged.  With an ``idempotency_key`` already used by this
    customer, the order it placed is returned (``replayed``) if the request is the same, and
    ``IdempotencyKeyReused`` is raised if it differs.

    The branch and the prices are read first (neither read locks anything), so the order row
    is claimed with its amounts and, without a coupon, never updated afterwards.  A refusal
    is raised only after the claim, so a replayed key still returns its order.
    """
    lines = _merge_lines(items)
    code = normalize_coupon_code(coupon_code) if coupon_code is not None else None
    # Checked before the order row is written, whose foreign key would otherwise fail on it.
    branch_active = branch_state(session, branch_id)
    if branch_active is None:
        raise UnknownBranch(f"there is no branch {branch_id}")
    products = get_active_products(session, list(lines))
    unavailable = [product_id for product_id in lines if product_id not in products]
    priced = [
        (product_id, qty, Decimal(products[product_id].price))
        for product_id, qty in lines.items()
        if product_id in products
    ]
    subtotal = sum((price * qty for _, qty, price in priced), Decimal("0.00"))
    too_large = subtotal > MAX_ORDER_AMOUNT or any(
        price * qty > MAX_LINE_AMOUNT for _, qty, price in priced
    )
    # an order about to be refused is claimed with zero amounts (its row is rolled back)
    claimed_amount = Decimal("0.00") if unavailable or too_large else subtotal
    now = utcnow()
    order_id = _claim(session, customer_id, branch_id, idempotency_key, claimed_amount, now)
    if order_id is None:
        assert idempotency_key is not None
        return _replay(session, customer_id, idempotency_key, branch_id, lines, code)
    if unavailable:
        raise ProductUnavailable(
            "not for sale: product"
            + ("s " if len(unavailable) > 1 else " ")
            + ", ".join(map(str, unavailable)),
            details={"product_ids": unavailable},
        )
    if too_large:
        raise OrderTooLarge(
            f"the order's amounts would exceed {MAX_ORDER_AMOUNT}",
            details={"subtotal": str(subtotal)},
        )
    if not branch_active:
        raise BranchInactive(f"branch {branch_id} is inactive")

    withdraw_stock(
        session,
        branch_id=branch_id,
        quantities=lines,
        reason=MovementReason.SALE,
        reference=f"order:{order_id}",
        author_id=customer_id,
        check_branch=False,
    )
    connection = session.connection()
    coupon_id = None
    discount = Decimal("0.00")
    if code is not None:
        coupon_id, kind, value = _use_coupon(session, code, now)
        discount = _discount(kind, value, subtotal)
        _APPLY_COUPON.run(
            connection,
            {
                "o_id": order_id,
                "o_coupon": coupon_id,
                "o_discount": discount,
                "o_total": subtotal - discount,
                "o_now": now,
            },
        )
    new_lines = [NewLine(product_id, qty, price, price * qty) for product_id, qty, price in priced]
    # one multi-row INSERT; the response needs no item ids, so nothing is returned
    _INSERT_ITEMS.run_many(
        connection,
        [
            {
                "order_id": order_id,
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "line_total": line.line_total,
                "created_at": now,
                "updated_at": now,
                "created_by_id": customer_id,
                "updated_by_id": customer_id,
            }
            for line in new_lines
        ],
    )
    order = NewOrder(
        id=order_id,
        customer_id=customer_id,
        branch_id=branch_id,
        subtotal=subtotal,
        discount=discount,
        total=subtotal - discount,
        coupon_id=coupon_id,
        idempotency_key=idempotency_key,
        created_at=now,
    )
    count_on_commit(session, ORDERS_PLACED)
    return PlacedOrder(order, new_lines)


_INSERT_ITEMS = Direct(sa.insert(table_of(OrderItem)))
_APPLY_COUPON = Direct(
    sa.update(_order)
    .where(_order.c.id == sa.bindparam("o_id", type_=sa.Integer))
    .values(
        coupon_id=sa.bindparam("o_coupon", type_=sa.Integer),
        discount=sa.bindparam("o_discount", type_=_order.c.discount.type),
        total=sa.bindparam("o_total", type_=_order.c.total.type),
        # set here rather than by the column's onupdate, which only SQLAlchemy's path computes
        updated_at=sa.bindparam("o_now", type_=_order.c.updated_at.type),
    )
)


def _merge_lines(items: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Quantities per product, in ascending product order."""
    merged: dict[int, int] = {}
    for product_id, quantity in items:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise InvalidQuantity(
                "quantities must be whole numbers greater than zero",
                details={"product_ids": [product_id]},
            )
        merged[product_id] = merged.get(product_id, 0) + quantity
    if not merged:
        raise EmptyOrder("an order needs at least one item")
    return dict(sorted(merged.items()))


def _claim(
    session: Session,
    customer_id: int,
    branch_id: int,
    idempotency_key: str | None,
    amount: Decimal,
    now: datetime,
) -> int | None:
    """Insert the order row and return its id; ``None`` if the key already placed an order.

    ``INSERT ... ON CONFLICT DO NOTHING`` is atomic: of concurrent placements with one key,
    one inserts and the others (on PostgreSQL) wait for it to commit, then insert nothing.
    Claiming before anything else is locked means such a waiter holds no other lock.
    """
    values = {
        "customer_id": customer_id,
        "branch_id": branch_id,
        "status": OrderStatus.PENDING,
        "subtotal": amount,
        "discount": Decimal("0.00"),
        "total": amount,
        "idempotency_key": idempotency_key,
        "created_at": now,
        "updated_at": now,
        "created_by_id": customer_id,
        "updated_by_id": customer_id,
    }
    connection = session.connection()
    statement = _claim_statement(connection.dialect.name, keyed=idempotency_key is not None)
    return statement.run(connection, values).scalar_one_or_none()


@lru_cache(maxsize=8)
def _claim_statement(dialect: str, *, keyed: bool) -> Direct:
    """The claiming ``INSERT``, built once per dialect: a key adds ``ON CONFLICT DO NOTHING``."""
    statement: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        statement = postgresql.insert(_order)
    elif dialect == "sqlite":
        statement = sqlite.insert(_order)
    else:
        raise NotImplementedError(f"order placement is not written for {dialect}")
    if keyed:
        statement = statement.on_conflict_do_nothing(
            index_elements=[_order.c.customer_id, _order.c.idempotency_key]
        )
    return Direct(statement.returning(_order.c.id))


def _replay(
    session: Session,
    customer_id: int,
    idempotency_key: str,
    branch_id: int,
    lines: Mapping[int, int],
    code: str | None,
) -> PlacedOrder:
    """The order a key already placed, if this request asks for the same thing.

    No fingerprint is stored: the stored order itself (branch, merged lines, coupon) is what
    the request is compared with.
    """
    order = session.exec(
        select(Order).where(
            Order.customer_id == customer_id, Order.idempotency_key == idempotency_key
        )
    ).first()
    if order is None:
        # Only possible above READ COMMITTED, where the winner's row is not visible yet.
        raise Conflict("an order with this idempotency key is being placed; retry the request")
    assert order.id is not None  # a stored order: its row has an id
    items = _items_of(session, [order.id])[order.id]
    stored_code = None
    if order.coupon_id is not None:
        stored_code = session.exec(select(Coupon.code).where(Coupon.id == order.coupon_id)).one()
    same = (
        order.branch_id == branch_id
        and {item.product_id: item.quantity for item in items} == dict(lines)
        and stored_code == code
    )
    if not same:
        raise IdempotencyKeyReused(
            "this idempotency key already placed a different order",
            details={"order_id": order.id},
        )
    return PlacedOrder(order, items, replayed=True)


def _use_coupon(session: Session, code: str, now: datetime) -> tuple[int, CouponKind, Decimal]:
    """Count one use of the coupon if it applies now, in one conditional statement.

    Codes are stored upper-cased, so comparing with the upper-cased input is a
    case-insensitive match that can use the unique index on ``code``.
    """
    c = _coupon.c
    statement = (
        sa.update(_coupon)
        .where(
            c.code == code,
            c.is_active,
            c.valid_from <= now,
            sa.or_(c.valid_until.is_(None), c.valid_until > now),
            sa.or_(c.usage_limit.is_(None), c.times_used < c.usage_limit),
        )
        .values(times_used=c.times_used + 1, updated_at=now)
        .returning(c.id, c.kind, c.value)
    )
    row = session.execute(statement).one_or_none()
    if row is None:
        _refuse_coupon(session, code, now)
    coupon_id, kind, value = row
    return coupon_id, CouponKind(kind), value


def _refuse_coupon(session: Session, code: str, now: datetime) -> NoReturn:
    """Say why a coupon did not apply (it was not counted)."""
    coupon = session.exec(select(Coupon).where(Coupon.code == code)).first()
    if coupon is None:
        raise CouponNotFound(f"there is no coupon {code!r}")
    if not coupon.is_active:
        raise CouponInactive(f"coupon {code} is not active")
    if coupon.valid_from > now:
        raise CouponNotYetValid(
            f"coupon {code} is valid from {coupon.valid_from.isoformat()}",
            details={"valid_from": coupon.valid_from.isoformat()},
        )
    if coupon.valid_until is not None and coupon.valid_until <= now:
        raise CouponExpired(
            f"coupon {code} expired at {coupon.valid_until.isoformat()}",
            details={"valid_until": coupon.valid_until.isoformat()},
        )
    raise CouponExhausted(
        f"coupon {code} has been used as many times as it may be",
        details={"usage_limit": coupon.usage_limit},
    )


def _discount(kind: CouponKind, value: Decimal, subtotal: Decimal) -> Decimal:
    if kind is CouponKind.PERCENT:
        return (subtotal * value / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)
    return min(value, subtotal)


# --- the order's life ------------------------------------------------------------------------


def confirm_order(
    session: Session, *, order_id: int, actor_id: int | None = None, viewer: Viewer | None = None
) -> Order:
    """PENDING → CONFIRMED; publishes ``sales.order_confirmed``.  ``viewer`` (staff) confirms
    only the orders in its reach (see ``require_reach``)."""
    order = lock_order(session, order_id)
    require_reach(session, order, viewer, missing=OrderNotFound(f"there is no order {order_id}"))
    _transition(order, OrderStatus.CONFIRMED, actor_id)
    session.flush()
    order.confirmed_at = order.updated_at
    session.flush()
    publish(
        session,
        "sales.order_confirmed",
        order_id=order.id,
        total=str(order.total),
        customer_id=order.customer_id,
    )
    return order


def mark_shipped(session: Session, *, order_id: int, actor_id: int | None = None) -> Order:
    """CONFIRMED → SHIPPED."""
    return _change_status(session, order_id, OrderStatus.SHIPPED, actor_id)


def mark_delivered(session: Session, *, order_id: int, actor_id: int | None = None) -> Order:
    """SHIPPED → DELIVERED."""
    return _change_status(session, order_id, OrderStatus.DELIVERED, actor_id)


def cancel_order(
    session: Session,
    *,
    order_id: int,
    actor_id: int | None = None,
    as_customer: int | None = None,
    viewer: Viewer | None = None,
) -> Order:
    """PENDING or CONFIRMED → CANCELLED: the stock and the coupon use are given back, and
    ``sales.order_cancelled`` is published.

    ``viewer``: staff, who cancel the orders in their reach (their branches', any with
    ``read_all``).  ``as_customer``: the caller as a customer, who cancels only their own
    order, and only while it is PENDING.  Given both, staff rules apply in the staff's reach
    and customer rules elsewhere; an order neither may touch is not found, as when reading.
    """
    order = lock_order(session, order_id)
    as_staff = viewer is not None and in_reach(session, order, viewer)
    if not as_staff and (viewer is not None or as_customer is not None):
        if as_customer is None or order.customer_id != as_customer:
            raise OrderNotFound(f"there is no order {order_id}")
        if order.status is OrderStatus.CONFIRMED:
            raise PermissionDenied("a confirmed order can only be cancelled by staff of its branch")
    _transition(order, OrderStatus.CANCELLED, actor_id)
    order.cancelled_at = order.updated_at
    items = _items_of(session, [order_id])[order_id]
    return_stock(
        session,
        branch_id=order.branch_id,
        quantities={item.product_id: item.quantity for item in items},
        reason=MovementReason.SALE_CANCELLED,
        reference=f"order:{order.id}",
        author_id=actor_id,
    )
    if order.coupon_id is not None:
        session.execute(
            sa.update(_coupon)
            .where(_coupon.c.id == order.coupon_id, _coupon.c.times_used > 0)
            .values(times_used=_coupon.c.times_used - 1, updated_at=utcnow())
        )
    session.flush()
    count_on_commit(session, ORDERS_CANCELLED)
    publish(
        session,
        "sales.order_cancelled",
        order_id=order.id,
        total=str(order.total),
        customer_id=order.customer_id,
    )
    return order


def lock_order(session: Session, order_id: int) -> Order:
    """The order, its row locked until the transaction ends (what every change of an order,
    here or in a downstream module, takes first); ``OrderNotFound`` if there is none."""
    order = session.exec(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if order is None:
        raise OrderNotFound(f"there is no order {order_id}")
    return order


def _transition(order: Order, to: OrderStatus, actor_id: int | None) -> None:
    if to not in TRANSITIONS[order.status]:
        raise InvalidTransition(
            f"order {order.id} is {order.status.value} and cannot become {to.value}",
            details={"from": order.status.value, "to": to.value},
        )
    order.status = to
    order.updated_at = utcnow()
    order.updated_by_id = actor_id


def _change_status(session: Session, order_id: int, to: OrderStatus, actor_id: int | None) -> Order:
    order = lock_order(session, order_id)
    _transition(order, to, actor_id)
    session.flush()
    return order


# --- reading orders --------------------------------------------------------------------------


def get_order(
    session: Session, *, order_id: int, viewer: Viewer | None = None
) -> tuple[Order, list[OrderItem]]:
    """The order and its items; an order ``viewer`` may not see is not found."""
    statement = select(Order).where(Order.id == order_id)
    visible = visible_orders_where(viewer)
    if visible is not None:
        statement = statement.where(visible)
    order = session.exec(statement).first()
    if order is None:
        raise OrderNotFound(f"there is no order {order_id}")
    return order, _items_of(session, [order_id])[order_id]


def order_items(session: Session, *, order_id: int) -> list[OrderItem]:
    return _items_of(session, [order_id])[order_id]


def visible_orders(session: Session, viewer: Viewer | None) -> sa.Select[int] | None:
    """The ids of the orders ``viewer`` may read, as a subquery for what hangs off orders in
    other modules (payments, shipments); ``None`` when they may read every order."""
    if viewer is None or viewer.read_all:
        return None
    return orders_readable_by(viewer.user_id)


def orders_readable_by(user_id: int | sa.BindParameter[Any]) -> sa.Select[int]:
    """The ids of the orders a caller without ``read_all`` may read, as a subquery."""
    return sa.select(_order.c.id).where(orders_visible_to(user_id))


def in_reach(session: Session, order: Order, viewer: Viewer | None) -> bool:
    """Whether ``viewer`` acts on the order as staff: it is of one of their branches, or they
    hold ``read_all`` (no viewer: a caller inside the application)."""
    if viewer is None or viewer.read_all:
        return True
    return order.branch_id in branch_ids_of(session, viewer.user_id)


def require_reach(
    session: Session, order: Order, viewer: Viewer | None, *, missing: DomainError
) -> None:
    """Let staff act only on the orders in their reach (``in_reach``), and on what hangs off
    them in other modules.  Out of reach, the order (or its shipment, its payment) is
    ``missing``, indistinguishable from one that does not exist, unless ``viewer`` may read it
    anyway (it is their own order, placed at another branch): then a 403."""
    if in_reach(session, order, viewer):
        return
    if viewer is not None and order.customer_id == viewer.user_id:
        raise PermissionDenied(
            f"order {order.id} is yours, at a branch you are not staff of: "
            "staff act only on their branches' orders"
        )
    raise missing


def visible_orders_where(viewer: Viewer | None) -> sa.ColumnElement[bool] | None:
    """The condition keeping to the orders ``viewer`` may read (their own, their branches'),
    in the statement itself; ``None`` when they may read every order."""
    if viewer is None or viewer.read_all:
        return None
    return orders_visible_to(viewer.user_id)


def orders_visible_to(user_id: int | sa.BindParameter[Any]) -> sa.ColumnElement[bool]:
    """The orders a caller without ``read_all`` may read: their own and their branches'."""
    return sa.or_(_order.c.customer_id == user_id, _order.c.branch_id.in_(staff_branches(user_id)))


def _items_of(session: Session, order_ids: Sequence[int]) -> dict[int, list[OrderItem]]:
    found: dict[int, list[OrderItem]] = {order_id: [] for order_id in order_ids}
    if not order_ids:
        return found
    items = session.exec(
        select(OrderItem)
        .where(col(OrderItem.order_id).in_(order_ids))
        .order_by(col(OrderItem.order_id), col(OrderItem.product_id))
    )
    for item in items:
        found[item.order_id].append(item)
    return found
