"""What payments does when other modules report events (see ``Module.subscribers``)."""

from __future__ import annotations

import logging

from sqlmodel import Session

from tecnorev.core.events import Event
from tecnorev.payments.service import refund_order_payments

log = logging.getLogger("tecnorev.payments")


def refund_cancelled_order(session: Session, event: Event) -> None:
    """``sales.order_cancelled``: give back what the order was paid.  Runs after the
    cancellation committed, in a unit of work of its own; delivered twice, it refunds once."""
    order_id = int(event.payload["order_id"])
    refunded = refund_order_payments(session, order_id=order_id)
    if refunded:
        log.info("order %s cancelled: refunded payments %s", order_id, refunded)
