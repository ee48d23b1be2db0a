"""Demo data of the sales module: coupons (one expired, one used up by the demo orders) and 60
orders of the demo customers at the demo branches, placed and moved along with the sales
service, so stock, ledger and coupon counts are what real use would leave.

Each order has an idempotency key (``demo-001`` ...) whose number always means the same
customer and the same aim: PENDING, CONFIRMED or CANCELLED orders are finished here; orders
meant to be SHIPPED or DELIVERED are left CONFIRMED for the logistics loader, which ships
them with shipments (without logistics they stay CONFIRMED).

Leaves for later loaders: ``sales.orders``, a list of :class:`DemoOrder`.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from tecnorev.core.types import utcnow
from tecnorev.sales.models import Coupon, CouponKind, Order, OrderStatus
from tecnorev.sales.placed import NewOrder
from tecnorev.sales.schemas import CouponCreate
from tecnorev.sales.service import cancel_order, confirm_order, create_coupon, place_order

if TYPE_CHECKING:
    from tecnorev.catalog.demo import DemoProduct
    from tecnorev.core.demo import DemoContext

S = OrderStatus
ORDERS = 60
# The aim of order n is CYCLE[n % len(CYCLE)], so a key means the same status on every run.
CYCLE: tuple[OrderStatus, ...] = (
    S.DELIVERED,
    S.PENDING,
    S.CONFIRMED,
    S.DELIVERED,
    S.SHIPPED,
    S.PENDING,
    S.CANCELLED,
    S.DELIVERED,
    S.PENDING,
    S.CONFIRMED,
    S.SHIPPED,
    S.CANCELLED,
)
BRANCH_WEIGHTS = {"CENTRO": 5, "NORTE": 3, "SUR": 2}

WELCOME = "WELCOME10"
FIXED = "FIXED5"
EXPIRED = "SUMMER15"
EXHAUSTED = "LAUNCH20"
EXHAUSTED_LIMIT = 3
FIXED_MINIMUM = Decimal("20.00")  # FIXED5 goes on orders of at least this much


@dataclass(frozen=True)
class DemoOrder:
    id: int
    key: str
    target: OrderStatus  # the status the demo data set gives it
    customer_id: int


@dataclass(frozen=True)
class PlannedOrder:
    key: str
    target: OrderStatus
    customer_id: int
    branch_id: int
    items: tuple[tuple[int, int], ...]  # empty: nothing left to sell at the branch
    coupon: str | None


def order_key(index: int) -> str:
    return f"demo-{index + 1:03d}"


def coupons() -> list[CouponCreate]:
    now = utcnow().replace(microsecond=0)
    percent, fixed = CouponKind.PERCENT, CouponKind.FIXED
    return [
        CouponCreate(
            code=WELCOME, kind=percent, value=Decimal(10), valid_from=now - timedelta(days=90)
        ),
        CouponCreate(
            code=FIXED, kind=fixed, value=Decimal("5.00"), valid_from=now - timedelta(days=30)
        ),
        CouponCreate(
            code=EXPIRED,
            kind=percent,
            value=Decimal(15),
            valid_from=now - timedelta(days=240),
            valid_until=now - timedelta(days=150),
        ),
        CouponCreate(
            code=EXHAUSTED,
            kind=percent,
            value=Decimal(20),
            valid_from=now - timedelta(days=45),
            usage_limit=EXHAUSTED_LIMIT,
        ),
    ]


def plan_orders(
    rng: random.Random,
    *,
    customer_ids: Sequence[int],
    branch_ids: Mapping[str, int],
    stock: Mapping[int, Mapping[int, int]],
    prices: Mapping[int, Decimal],
) -> list[PlannedOrder]:
    """The demo orders, drawing items only from what each branch has left."""
    left = {branch_id: dict(lines) for branch_id, lines in stock.items()}
    codes = [code for code in BRANCH_WEIGHTS if code in branch_ids]
    weights = [BRANCH_WEIGHTS[code] for code in codes]
    exhausted_uses = 0
    planned: list[PlannedOrder] = []
    for index in range(ORDERS):
        target = CYCLE[index % len(CYCLE)]
        branch_id = branch_ids[rng.choices(codes, weights)[0]]
        in_stock = sorted(p for p, units in left.get(branch_id, {}).items() if units > 0)
        lines = rng.randint(1, 4)
        items: list[tuple[int, int]] = []
        for product_id in sorted(rng.sample(in_stock, min(lines, len(in_stock)))):
            units = min(rng.randint(1, 3), left[branch_id][product_id])
            left[branch_id][product_id] -= units
            items.append((product_id, units))
        subtotal = sum((prices.get(p, Decimal(0)) * units for p, units in items), Decimal(0))
        coupon = None
        if index < len(customer_ids):  # each customer's first order
            coupon = WELCOME
        elif target is S.DELIVERED and exhausted_uses < EXHAUSTED_LIMIT:
            coupon = EXHAUSTED
            exhausted_uses += 1
        elif index % 10 == 5 and subtotal >= FIXED_MINIMUM:
            coupon = FIXED
        planned.append(
            PlannedOrder(
                key=order_key(index),
                target=target,
                customer_id=customer_ids[index % len(customer_ids)],
                branch_id=branch_id,
                items=tuple(items),
                coupon=coupon,
            )
        )
    return planned


def _advance(
    session: Session,
    order: Order | NewOrder,
    plan: PlannedOrder,
    *,
    staff_id: int | None,
    by_staff: bool,
) -> None:
    """Take a just placed order to its aim, as far as sales goes."""
    if plan.target is S.PENDING:
        return
    assert order.id is not None  # placed: its row has an id
    if plan.target is S.CANCELLED and not by_staff:  # the customer changed their mind
        cancel_order(
            session, order_id=order.id, actor_id=plan.customer_id, as_customer=plan.customer_id
        )
        return
    confirm_order(session, order_id=order.id, actor_id=staff_id)
    if plan.target is S.CANCELLED:  # confirmed, then the shop could not supply it
        cancel_order(session, order_id=order.id, actor_id=staff_id)


def load(session: Session, ctx: DemoContext) -> str:
    rng = random.Random(ctx.random.getrandbits(64))
    added: list[str] = []

    codes = [c.code for c in coupons()]
    stored = set(session.exec(select(Coupon.code).where(col(Coupon.code).in_(codes))))
    new_coupons = [data for data in coupons() if data.code not in stored]
    for data in new_coupons:
        create_coupon(session, data=data, actor_id=ctx.values.get("auth.manager_id"))
    if new_coupons:
        added.append(f"{len(new_coupons)} coupons")

    customer_ids: Sequence[int] = ctx.values.get("auth.customer_ids", ())
    branch_ids: Mapping[str, int] = ctx.values.get("inventory.branch_ids", {})
    if not customer_ids or not branch_ids:
        ctx.values["sales.orders"] = []
        return ("added " + ", ".join(added) if added else "coupons already there") + (
            "; no orders: the demo customers or branches are missing"
        )
    products: Sequence[DemoProduct] = ctx.values.get("catalog.products", ())
    planned = plan_orders(
        rng,
        customer_ids=customer_ids,
        branch_ids=branch_ids,
        stock=ctx.values.get("inventory.stock", {}),
        prices={p.id: p.price for p in products},
    )
    staff_id = ctx.values.get("auth.clerk_id")
    manager_id = ctx.values.get("auth.manager_id")

    existing = {
        order.idempotency_key: order
        for order in session.exec(
            select(Order).where(
                col(Order.idempotency_key).in_([p.key for p in planned]),
                col(Order.customer_id).in_(customer_ids),
            )
        )
    }
    placed = 0
    cancellations = 0
    demo_orders: list[DemoOrder] = []
    for plan in planned:
        by_staff = plan.target is S.CANCELLED and cancellations % 2 == 1
        cancellations += plan.target is S.CANCELLED
        order: Order | NewOrder | None = existing.get(plan.key)
        if order is None and plan.items:
            order = place_order(
                session,
                customer_id=plan.customer_id,
                branch_id=plan.branch_id,
                items=plan.items,
                coupon_code=plan.coupon,
                idempotency_key=plan.key,
            ).order
            _advance(
                session,
                order,
                plan,
                staff_id=manager_id if by_staff else staff_id,
                by_staff=by_staff,
            )
            placed += 1
        if order is not None:
            assert order.id is not None  # placed: its row has an id
            demo_orders.append(DemoOrder(order.id, plan.key, plan.target, plan.customer_id))
    ctx.values["sales.orders"] = demo_orders

    if placed:
        statuses = Counter(
            session.exec(select(Order.status).where(col(Order.id).in_([o.id for o in demo_orders])))
        )
        counts = ", ".join(f"{status.value} {statuses[status]}" for status in S if statuses[status])
        added.append(f"{placed} orders (now {counts})")
    if not added:
        return f"{len(codes)} coupons and {len(demo_orders)} orders already there"
    return "added " + ", ".join(added)
