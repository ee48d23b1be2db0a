"""Payments of orders: recording what a provider reports, and refunding cancelled orders.

A payment is recorded with its order row locked, so two payments of one order are added up
one after the other (never both under the total while together over it), and a cancellation
either sees the payment (and refunds it afterwards) or the payment sees the cancellation.
Full payment of a PENDING order confirms it through sales, in the same unit of work.
Branch reach is sales' (``Viewer`` built with ``payments:read_all``): staff record payments
for their branches' orders only, and read the payments of the orders they may read.

Refunds mark the order's succeeded payments REFUNDED rather than adding refund rows: a
refund here gives back a whole payment, the payment row already says which money it was, and
a status change is idempotent by construction (a second delivery finds nothing SUCCEEDED).
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tecnorev.core.db import is_unique_violation, table_of
from tecnorev.core.metrics import count_on_commit
from tecnorev.core.settings import store_currency
from tecnorev.core.types import utcnow
from tecnorev.payments.errors import (
    CurrencyMismatch,
    OrderCancelled,
    Overpayment,
    PaymentNotFound,
    PaymentReferenceTaken,
)
from tecnorev.payments.metrics import PAYMENTS, REFUNDS
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.sales import service as sales
from tecnorev.sales.errors import OrderNotFound
from tecnorev.sales.models import Order, OrderStatus
from tecnorev.sales.service import Viewer, visible_orders

CENT = Decimal("0.01")

_payment = table_of(Payment)


# --- recording and refunding -----------------------------------------------------------------


def record_payment(
    session: Session,
    *,
    order_id: int,
    amount: Decimal,
    currency: str | None,
    provider: str,
    provider_reference: str,
    actor_id: int | None = None,
    viewer: Viewer | None = None,
) -> Payment:
    """Store a SUCCEEDED payment of ``amount`` for an order in ``viewer``'s reach that is not
    cancelled, as long as the order's succeeded payments stay within its total; reaching the
    total confirms a PENDING order."""
    amount = amount.quantize(CENT)
    order = sales.lock_order(session, order_id)
    sales.require_reach(
        session, order, viewer, missing=OrderNotFound(f"there is no order {order_id}")
    )
    if _reference_used(session, provider, provider_reference):
        raise _reference_taken(provider, provider_reference)
    if order.status is OrderStatus.CANCELLED:
        raise OrderCancelled(f"order {order_id} is cancelled and takes no payment")
    succeeded = session.exec(
        select(col(Payment.amount), col(Payment.currency)).where(
            Payment.order_id == order_id, Payment.status == PaymentStatus.SUCCEEDED
        )
    ).all()
    # an order is priced in the store's currency; one paid before the setting changed stays
    # paid in what its first payment was
    paid_in = {code for _, code in succeeded}  # one at most, by this very check
    expected = min(paid_in) if paid_in else store_currency()
    currency = currency or expected
    if currency != expected:
        raise CurrencyMismatch(
            f"order {order_id} is paid in {expected}, not {currency}",
            details={"currency": expected},
        )
    paid = sum((Decimal(earlier).quantize(CENT) for earlier, _ in succeeded), Decimal("0.00"))
    total = Decimal(order.total).quantize(CENT)
    if paid + amount > total:
        raise Overpayment(
            f"order {order_id} totals {total} and {paid} is already paid; "
            f"{amount} would pay more than the total",
            details={"total": str(total), "paid": str(paid), "outstanding": str(total - paid)},
        )
    payment = Payment(
        order_id=order_id,
        amount=amount,
        currency=currency,
        status=PaymentStatus.SUCCEEDED,
        provider=provider,
        provider_reference=provider_reference,
        created_by_id=actor_id,
        updated_by_id=actor_id,
    )
    session.add(payment)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        # The same reference recorded concurrently for another order (this order's payments
        # are serialised by its lock).
        if is_unique_violation(exc):
            raise _reference_taken(provider, provider_reference) from exc
        raise
    count_on_commit(session, PAYMENTS, currency=currency)
    if paid + amount == total and order.status is OrderStatus.PENDING:
        sales.confirm_order(session, order_id=order_id, actor_id=actor_id)
    return payment


def refund_order_payments(session: Session, *, order_id: int) -> list[int]:
    """Mark the succeeded payments of a CANCELLED order REFUNDED; the ids refunded (none when
    they already were, so running it twice is harmless)."""
    # Only a cancelled order is refunded, whoever delivers the event; CANCELLED is final.
    status = session.exec(select(Order.status).where(Order.id == order_id)).first()
    if status is not OrderStatus.CANCELLED:
        return []
    p = _payment.c
    refunded = session.execute(
        sa.update(_payment)
        .where(p.order_id == order_id, p.status == PaymentStatus.SUCCEEDED)
        .values(status=PaymentStatus.REFUNDED, updated_at=utcnow(), updated_by_id=None)
        .returning(p.id)
    ).scalars()
    ids = sorted(refunded)
    if ids:
        count_on_commit(session, REFUNDS, len(ids))
    return ids


def _reference_used(session: Session, provider: str, provider_reference: str) -> bool:
    found = session.exec(
        select(Payment.id).where(
            Payment.provider == provider, Payment.provider_reference == provider_reference
        )
    ).first()
    return found is not None


def _reference_taken(provider: str, provider_reference: str) -> PaymentReferenceTaken:
    return PaymentReferenceTaken(
        f"{provider} payment {provider_reference!r} is already recorded",
        details={"provider": provider, "provider_reference": provider_reference},
    )


# --- reading payments ------------------------------------------------------------------------


def get_payment(session: Session, *, payment_id: int, viewer: Viewer | None = None) -> Payment:
    """The payment; one ``viewer`` may not see is not found."""
    statement = select(Payment).where(Payment.id == payment_id)
    visible = visible_where(session, viewer)
    if visible is not None:
        statement = statement.where(visible)
    payment = session.exec(statement).first()
    if payment is None:
        raise PaymentNotFound(f"there is no payment {payment_id}")
    return payment


def visible_where(session: Session, viewer: Viewer | None) -> sa.ColumnElement[bool] | None:
    # what hangs off an order is visible to whoever may read the order
    orders = visible_orders(session, viewer)
    return None if orders is None else col(Payment.order_id).in_(orders)
