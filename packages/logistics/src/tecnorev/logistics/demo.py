"""Demo data of the logistics module: shipments for the demo orders meant to be SHIPPED or
DELIVERED, which the sales loader left CONFIRMED.  Shipping and delivering go through the
logistics service, which moves each order along with its shipment.

Carriers and tracking numbers are derived from the order's idempotency key, so they are the
same on every run and never collide with the numbers of earlier runs.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from tecnorev.logistics.models import Shipment, ShipmentStatus
from tecnorev.logistics.service import create_shipment, deliver_shipment, ship_shipment
from tecnorev.sales.models import Order, OrderStatus

if TYPE_CHECKING:
    from tecnorev.core.demo import DemoContext
    from tecnorev.sales.demo import DemoOrder

CARRIERS = ("DHL", "UPS", "FedEx")


def tracking(key: str) -> tuple[str, str]:
    """The carrier and a tracking number in that carrier's usual shape."""
    digest = hashlib.sha256(f"tecnorev-demo:{key}".encode()).hexdigest()
    carrier = CARRIERS[int(digest[:8], 16) % len(CARRIERS)]
    number = int(digest[8:40], 16)
    if carrier == "DHL":
        return carrier, f"{number % 10**10:010d}"
    if carrier == "UPS":
        return carrier, "1Z" + digest[40:56].upper()
    return carrier, f"{number % 10**12:012d}"


def load(session: Session, ctx: DemoContext) -> str:
    orders: list[DemoOrder] = [
        order
        for order in ctx.values.get("sales.orders", ())
        if order.target in (OrderStatus.SHIPPED, OrderStatus.DELIVERED)
    ]
    ids = [order.id for order in orders]
    statuses = dict(
        session.exec(select(Order.id, Order.status).where(col(Order.id).in_(ids))).all()
    )
    shipments = {
        shipment.order_id: shipment
        for shipment in session.exec(
            select(Shipment).where(
                col(Shipment.order_id).in_(ids), Shipment.status != ShipmentStatus.CANCELLED
            )
        )
    }
    actor_id = ctx.values.get("auth.clerk_id")
    created = shipped = delivered = 0
    for order in orders:
        shipment = shipments.get(order.id)
        if shipment is None:
            if statuses.get(order.id) is not OrderStatus.CONFIRMED:
                continue  # moved on some other way since: leave it be
            carrier, number = tracking(order.key)
            shipment = create_shipment(
                session,
                order_id=order.id,
                carrier=carrier,
                tracking_number=number,
                actor_id=actor_id,
            )
            created += 1
        assert shipment.id is not None  # stored (read, or created and flushed): it has an id
        if shipment.status is ShipmentStatus.PENDING:
            ship_shipment(session, shipment_id=shipment.id, actor_id=actor_id)
            shipped += 1
        if shipment.status is ShipmentStatus.SHIPPED and order.target is OrderStatus.DELIVERED:
            deliver_shipment(session, shipment_id=shipment.id, actor_id=actor_id)
            delivered += 1
    if not (created or shipped or delivered):
        return f"{len(shipments)} shipments already there"
    return (
        f"added {created} shipments; shipped {shipped}, delivered {delivered} "
        "(their orders with them)"
    )
