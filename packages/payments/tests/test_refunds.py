"""A cancelled order's payments are refunded by reacting to sales' event, after the
cancellation commits; sales knows nothing of payments and works without it."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import Session, select

from tecnorev.core.events import Event
from tecnorev.payments import module
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.payments.reactions import refund_cancelled_order
from tecnorev.sales.models import OrderStatus

OS = OrderStatus
P = PaymentStatus


def test_the_module_subscribes_to_cancellations():
    assert module.subscribers == (
        ("sales.order_cancelled", "tecnorev.payments.reactions:refund_cancelled_order"),
    )


def test_cancelling_a_paid_order_refunds_it(shop):
    order_id = shop.order(quantity=2)
    pid = shop.pay(order_id, "39.80", "ch_1").json()["id"]
    assert shop.order_status(order_id) is OS.CONFIRMED

    cancelled = shop.cancel(order_id)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    # The reaction ran once the cancellation committed, before its response went out.
    assert shop.get(f"/{pid}").json()["status"] == "REFUNDED"


def test_a_customer_cancelling_a_partly_paid_order_is_refunded(shop):
    order_id = shop.order(quantity=2)
    paid = [
        shop.pay(order_id, amount, ref).json()["id"] for amount, ref in (("5", "a"), ("6", "b"))
    ]
    other = shop.order()
    kept = shop.pay(other, "1", "c").json()["id"]

    assert shop.cancel(order_id, who="customer").status_code == 200
    for pid in paid:
        assert shop.get(f"/{pid}", who="customer").json()["status"] == "REFUNDED"
    assert shop.get(f"/{kept}").json()["status"] == "SUCCEEDED"
    assert shop.order_status(other) is OS.PENDING


def test_a_refused_cancellation_refunds_nothing(shop):
    order_id = shop.order(quantity=1)
    pid = shop.pay(order_id, "19.90", "ch_1").json()["id"]
    # A customer may not cancel a confirmed order: nothing is committed, no event is delivered.
    shop.refused(shop.cancel(order_id, who="customer"), 403, "permission_denied")
    assert shop.get(f"/{pid}").json()["status"] == "SUCCEEDED"
    assert shop.order_status(order_id) is OS.CONFIRMED


def test_the_refund_is_idempotent(shop):
    order_id = shop.order(quantity=1)
    shop.pay(order_id, "19.90", "ch_1")
    assert shop.cancel(order_id).status_code == 200
    with Session(shop.engine) as session:
        before = session.exec(select(Payment)).one()
    assert before.status is P.REFUNDED

    # Delivered again (a retry, say): nothing changes.
    event = Event("sales.order_cancelled", {"order_id": order_id, "total": "19.90"})
    with Session(shop.engine) as session:
        refund_cancelled_order(session, event)
        session.commit()
    with Session(shop.engine) as session:
        after = session.exec(select(Payment)).one()
    assert (after.status, after.updated_at) == (P.REFUNDED, before.updated_at)


def test_an_event_for_an_order_not_cancelled_refunds_nothing(shop):
    order_id = shop.order(quantity=1)
    shop.pay(order_id, "19.90", "ch_1")
    with Session(shop.engine) as session:
        refund_cancelled_order(session, Event("sales.order_cancelled", {"order_id": order_id}))
        session.commit()
    assert shop.payments(order_id) == [(Decimal("19.90"), P.SUCCEEDED)]


def test_without_payments_installed_cancelling_works_and_refunds_nothing(
    shop_without_payments,
):
    shop = shop_without_payments
    assert not any(p.startswith("/api/v1/payments") for p in shop.client.app.openapi()["paths"])
    order_id = shop.order(OS.CONFIRMED, quantity=1)
    # A payment stored while payments was installed.
    with Session(shop.engine) as session:
        session.add(
            Payment(
                order_id=order_id,
                amount=Decimal("19.90"),
                status=P.SUCCEEDED,
                provider="card",
                provider_reference="ch_1",
            )
        )
        session.commit()

    cancelled = shop.cancel(order_id)
    assert cancelled.status_code == 200, cancelled.text
    assert shop.order_status(order_id) is OS.CANCELLED
    assert shop.payments(order_id) == [(Decimal("19.90"), P.SUCCEEDED)]
