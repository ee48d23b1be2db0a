"""Demo data of the payments module, recorded through the payments service:

- of the demo orders left PENDING, five are paid in full online (which confirms them), two
  are half paid (they stay PENDING), and one is paid, then cancelled by the shop and refunded;
- DELIVERED orders were paid in cash on delivery, and every other order meant to be SHIPPED
  was paid online.

Provider references are derived from the order's idempotency key, so a second run finds each
payment it would record.
"""

from __future__ import annotations

import hashlib
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlmodel import Session, select

from tecnorev.core.db import table_of
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.payments.service import record_payment, refund_order_payments
from tecnorev.sales.models import Order, OrderStatus
from tecnorev.sales.service import cancel_order

if TYPE_CHECKING:
    from tecnorev.core.demo import DemoContext
    from tecnorev.sales.demo import DemoOrder


CENT = Decimal("0.01")
PAID_IN_FULL = 5
HALF_PAID = 2
ONLINE = "stripe"
CASH = "cash"

FULL, HALF, REFUND = "full", "half", "refund"


def reference(provider: str, key: str) -> str:
    if provider == CASH:
        return f"CASH-{key.upper()}"
    return "pi_" + hashlib.sha256(f"tecnorev-demo:{key}".encode()).hexdigest()[:24]


def plan_payments(orders: list[DemoOrder]) -> list[tuple[DemoOrder, str, str]]:
    """(order, provider, what) for each demo payment."""
    pending = [o for o in orders if o.target is OrderStatus.PENDING]
    shipped = [o for o in orders if o.target is OrderStatus.SHIPPED]
    planned = [(o, ONLINE, FULL) for o in pending[:PAID_IN_FULL]]
    planned += [(o, ONLINE, HALF) for o in pending[PAID_IN_FULL : PAID_IN_FULL + HALF_PAID]]
    planned += [(o, ONLINE, REFUND) for o in pending[PAID_IN_FULL + HALF_PAID :][:1]]
    planned += [(o, CASH, FULL) for o in orders if o.target is OrderStatus.DELIVERED]
    planned += [(o, ONLINE, FULL) for o in shipped[::2]]
    return planned


def load(session: Session, ctx: DemoContext) -> str:
    planned = plan_payments(list(ctx.values.get("sales.orders", ())))
    p = table_of(Payment).c
    recorded = {
        (provider, ref)
        for provider, ref in session.execute(
            sa.select(p.provider, p.provider_reference).where(
                p.provider_reference.in_([reference(pr, o.key) for o, pr, _ in planned])
            )
        )
    }
    manager_id = ctx.values.get("auth.manager_id")
    added = confirmed = refunded = 0
    for order_plan, provider, what in planned:
        ref = reference(provider, order_plan.key)
        if (provider, ref) in recorded:
            continue
        order = session.get(Order, order_plan.id)
        if order is None or order.status is OrderStatus.CANCELLED:
            continue
        if what != FULL and order.status is not OrderStatus.PENDING:
            continue  # confirmed some other way since: leave it be
        if provider == CASH and order.status is not OrderStatus.DELIVERED:
            continue  # paid on delivery: not yet (without logistics, never)
        paid = session.exec(
            select(sa.func.coalesce(sa.func.sum(Payment.amount), 0)).where(
                Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED
            )
        ).one()
        outstanding = (Decimal(order.total) - Decimal(paid)).quantize(CENT)
        amount = (outstanding / 2).quantize(CENT, ROUND_DOWN) if what == HALF else outstanding
        if amount <= 0:
            continue
        was_pending = order.status is OrderStatus.PENDING
        record_payment(
            session,
            order_id=order_plan.id,
            amount=amount,
            currency=None,  # the store's
            provider=provider,
            provider_reference=ref,
            actor_id=manager_id,
        )
        added += 1
        if what == REFUND:  # the shop cannot supply it after all
            cancel_order(session, order_id=order_plan.id, actor_id=manager_id)
            # refunded now rather than by the cancellation's event (which then finds nothing)
            refunded += len(refund_order_payments(session, order_id=order_plan.id))
        elif was_pending and order.status is OrderStatus.CONFIRMED:
            confirmed += 1
    if not added:
        return f"{len(recorded)} payments already there"
    return (
        f"added {added} payments; {confirmed} pending orders confirmed by full payment, "
        f"{refunded} refunded (its order was cancelled after payment)"
    )
