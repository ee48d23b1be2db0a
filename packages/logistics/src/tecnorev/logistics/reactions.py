"""What logistics does when other modules report events (see ``Module.subscribers``)."""

from __future__ import annotations

import logging

from sqlmodel import Session

from tecnorev.core.events import Event
from tecnorev.logistics.service import cancel_order_shipments

log = logging.getLogger("tecnorev.logistics")


def cancel_shipments_of_cancelled_order(session: Session, event: Event) -> None:
    """``sales.order_cancelled``: nothing is left to ship, so the order's PENDING shipment is
    cancelled.  Runs after the cancellation committed, in a unit of work of its own;
    delivered twice, it cancels once."""
    order_id = int(event.payload["order_id"])
    cancelled = cancel_order_shipments(session, order_id=order_id)
    if cancelled:
        log.info("order %s cancelled: cancelled shipments %s", order_id, cancelled)
