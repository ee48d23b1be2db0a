"""Concurrent payments of one order, on PostgreSQL (its row locks decide)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from sqlmodel import Session

from tecnorev.core.errors import DomainError
from tecnorev.core.events import deliver, take_committed
from tecnorev.payments import service
from tecnorev.payments.models import PaymentStatus
from tecnorev.sales import service as sales
from tecnorev.sales.models import OrderStatus
from tecnorev.testing.core import run_together


def race(engine, calls: list[Callable[[Session], object]]) -> list[str]:
    """Run each call at once, each in its own thread and unit of work (its events delivered
    after it commits, as a request's are); the outcome of each ("ok", or the refusal's code)
    in the order of ``calls``."""

    def run(i: int, start: Callable[[], object]) -> str:
        with Session(engine) as session:
            start()
            try:
                calls[i](session)
                session.commit()
                outcome = "ok"
            except DomainError as exc:
                session.rollback()
                outcome = exc.code
        deliver(take_committed(session), engine=engine)
        return outcome

    return run_together(len(calls), run)


def pay(order_id: int, amount: str, reference: str) -> Callable[[Session], object]:
    return lambda session: service.record_payment(
        session,
        order_id=order_id,
        amount=Decimal(amount),
        currency="USD",
        provider="card",
        provider_reference=reference,
    )


def test_concurrent_payments_never_pay_more_than_the_total(pg_shop):
    for attempt in range(5):
        order_id = pg_shop.order(quantity=2)  # 39.80
        outcomes = race(
            pg_shop.engine, [pay(order_id, "20.00", f"r{attempt}-{i}") for i in range(3)]
        )
        assert sorted(outcomes) == ["ok", "overpayment", "overpayment"]
        assert pg_shop.order_status(order_id) is OrderStatus.PENDING


def test_concurrent_full_payments_confirm_the_order_once(pg_shop):
    order_id = pg_shop.order(quantity=1)  # 19.90
    outcomes = race(pg_shop.engine, [pay(order_id, "19.90", f"r{i}") for i in range(3)])
    assert sorted(outcomes) == ["ok", "overpayment", "overpayment"]
    assert pg_shop.order_status(order_id) is OrderStatus.CONFIRMED


def test_a_payment_racing_a_cancellation_is_refused_or_seen_by_it(pg_shop):
    for attempt in range(5):
        order_id = pg_shop.order(quantity=1)
        outcomes = race(
            pg_shop.engine,
            [
                pay(order_id, "5", f"r{attempt}"),
                lambda session, order_id=order_id: sales.cancel_order(session, order_id=order_id),
            ],
        )
        assert outcomes[1] == "ok"
        # Either the payment came first (and the cancellation's refund will find it), or it
        # waited for the cancellation and was refused: never a payment the refund misses.
        assert outcomes[0] in {"ok", "order_cancelled"}
        assert pg_shop.order_status(order_id) is OrderStatus.CANCELLED
        expected = [(Decimal("5.00"), PaymentStatus.REFUNDED)] if outcomes[0] == "ok" else []
        assert pg_shop.payments(order_id) == expected
