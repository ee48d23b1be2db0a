"""Concurrent changes of one order or shipment, on PostgreSQL (its row locks decide)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlmodel import Session

from tecnorev.core.errors import DomainError
from tecnorev.logistics import service
from tecnorev.sales.models import OrderStatus
from tecnorev.testing.core import run_together


def race(engine, calls: list[Callable[[Session], object]]) -> list[str]:
    """Run each call at once, each in its own thread and unit of work; the outcome of each
    ("ok", or the refusal's code) in the order of ``calls``."""

    def run(i: int, start: Callable[[], object]) -> str:
        with Session(engine) as session:
            start()
            try:
                calls[i](session)
                session.commit()
                return "ok"
            except DomainError as exc:
                session.rollback()
                return exc.code

    return run_together(len(calls), run)


def test_concurrent_shipments_of_one_order_open_only_one(pg_shop):
    for _ in range(5):
        order_id = pg_shop.order()
        outcomes = race(
            pg_shop.engine,
            [
                partial(
                    service.create_shipment,
                    order_id=order_id,
                    carrier="DHL",
                    tracking_number=f"R{order_id}-{i}",
                )
                for i in range(4)
            ],
        )
        assert sorted(outcomes) == ["ok"] + ["order_already_has_shipment"] * 3
    assert [status for _, status in pg_shop.shipments()] == ["PENDING"] * 5


def test_concurrent_shipping_of_one_shipment_ships_it_once(pg_shop):
    order_id = pg_shop.order()
    with Session(pg_shop.engine) as session:
        sid = service.create_shipment(
            session, order_id=order_id, carrier="DHL", tracking_number="R-1"
        ).id
        session.commit()
    outcomes = race(
        pg_shop.engine,
        [lambda s: service.ship_shipment(s, shipment_id=sid) for _ in range(4)],
    )
    assert sorted(outcomes) == ["invalid_shipment_transition"] * 3 + ["ok"]
    assert pg_shop.order_status(order_id) is OrderStatus.SHIPPED
