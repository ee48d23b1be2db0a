"""Shipments: opening one for a confirmed order, and moving it (and its order) along.

The order's own life belongs to sales: shipping and delivering call its ``mark_shipped`` and
``mark_delivered`` in the same unit of work, so a shipment and its order never disagree.
Locks are taken shipment row first, then (inside sales) the order row; opening a shipment
locks only the order row, so the two paths never wait for each other in opposite orders.

Branch reach is sales' (``Viewer`` built with ``shipments:read_all``): a shipment is read by
whoever may read its order, and changed by staff of the order's branch (or every branch's with
``shipments:read_all``); out of reach it is not found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tecnorev.core.db import is_unique_violation
from tecnorev.core.types import utcnow
from tecnorev.logistics.errors import (
    InvalidShipmentTransition,
    OrderAlreadyHasShipment,
    OrderNotConfirmed,
    ShipmentNotFound,
    TrackingNumberTaken,
)
from tecnorev.logistics.models import Shipment, ShipmentStatus
from tecnorev.sales import service as sales
from tecnorev.sales.errors import OrderNotFound
from tecnorev.sales.models import Order, OrderStatus
from tecnorev.sales.service import Viewer, visible_orders

TRANSITIONS: Mapping[ShipmentStatus, frozenset[ShipmentStatus]] = {
    ShipmentStatus.PENDING: frozenset({ShipmentStatus.SHIPPED, ShipmentStatus.CANCELLED}),
    ShipmentStatus.SHIPPED: frozenset({ShipmentStatus.DELIVERED}),
    ShipmentStatus.DELIVERED: frozenset(),
    ShipmentStatus.CANCELLED: frozenset(),
}


# --- changing shipments ----------------------------------------------------------------------


def create_shipment(
    session: Session,
    *,
    order_id: int,
    carrier: str,
    tracking_number: str,
    actor_id: int | None = None,
    viewer: Viewer | None = None,
) -> Shipment:
    """A PENDING shipment for a CONFIRMED order in ``viewer``'s reach that has no other
    shipment under way.

    The order row is locked first, so two requests shipping one order cannot both see it
    without a shipment.
    """
    order = sales.lock_order(session, order_id)
    sales.require_reach(
        session, order, viewer, missing=OrderNotFound(f"there is no order {order_id}")
    )
    if order.status is not OrderStatus.CONFIRMED:
        raise OrderNotConfirmed(
            f"order {order_id} is {order.status.value}; only a CONFIRMED order can be shipped",
            details={"order_status": order.status.value},
        )
    active = session.exec(
        select(Shipment.id).where(
            Shipment.order_id == order_id, Shipment.status != ShipmentStatus.CANCELLED
        )
    ).first()
    if active is not None:
        raise OrderAlreadyHasShipment(
            f"order {order_id} already has shipment {active}; cancel it first",
            details={"shipment_id": active},
        )
    if _tracking_number_used(session, carrier, tracking_number):
        raise _tracking_number_taken(carrier, tracking_number)
    shipment = Shipment(
        order_id=order_id,
        carrier=carrier,
        tracking_number=tracking_number,
        created_by_id=actor_id,
        updated_by_id=actor_id,
    )
    session.add(shipment)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        # A concurrent shipment took the number between the check and the insert.
        if is_unique_violation(exc):
            raise _tracking_number_taken(carrier, tracking_number) from exc
        raise
    return shipment


def ship_shipment(
    session: Session,
    *,
    shipment_id: int,
    actor_id: int | None = None,
    viewer: Viewer | None = None,
) -> Shipment:
    """PENDING → SHIPPED, and its order CONFIRMED → SHIPPED."""
    shipment = _locked_shipment(session, shipment_id, viewer)
    _transition(shipment, ShipmentStatus.SHIPPED, actor_id)
    shipment.shipped_at = shipment.updated_at
    sales.mark_shipped(session, order_id=shipment.order_id, actor_id=actor_id)
    session.flush()
    return shipment


def deliver_shipment(
    session: Session,
    *,
    shipment_id: int,
    actor_id: int | None = None,
    viewer: Viewer | None = None,
) -> Shipment:
    """SHIPPED → DELIVERED, and its order SHIPPED → DELIVERED."""
    shipment = _locked_shipment(session, shipment_id, viewer)
    _transition(shipment, ShipmentStatus.DELIVERED, actor_id)
    # Never before shipped_at (a CHECK), even if the clock stepped back in between.
    shipment.delivered_at = max(shipment.updated_at, shipment.shipped_at or shipment.updated_at)
    sales.mark_delivered(session, order_id=shipment.order_id, actor_id=actor_id)
    session.flush()
    return shipment


def cancel_shipment(
    session: Session,
    *,
    shipment_id: int,
    actor_id: int | None = None,
    viewer: Viewer | None = None,
) -> Shipment:
    """PENDING → CANCELLED; the order stays CONFIRMED and may get a new shipment."""
    shipment = _locked_shipment(session, shipment_id, viewer)
    _transition(shipment, ShipmentStatus.CANCELLED, actor_id)
    session.flush()
    return shipment


def cancel_order_shipments(
    session: Session, *, order_id: int, actor_id: int | None = None
) -> list[int]:
    """Cancel the order's PENDING shipments (the order was cancelled) and return their ids;
    shipments already cancelled are left as they are, so a second call changes nothing."""
    pending = session.exec(
        select(Shipment)
        .where(Shipment.order_id == order_id, Shipment.status == ShipmentStatus.PENDING)
        .order_by(col(Shipment.id))
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for shipment in pending:
        _transition(shipment, ShipmentStatus.CANCELLED, actor_id)
    session.flush()
    # rows read from the table: every id is set
    return cast(list[int], [shipment.id for shipment in pending])


def _locked_shipment(session: Session, shipment_id: int, viewer: Viewer | None) -> Shipment:
    """The shipment, its row locked, if its order is in ``viewer``'s reach."""
    shipment = session.exec(
        select(Shipment)
        .where(Shipment.id == shipment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    missing = ShipmentNotFound(f"there is no shipment {shipment_id}")
    if shipment is None:
        raise missing
    if viewer is not None:
        # read without a lock: an order's branch and customer never change
        order = session.get_one(Order, shipment.order_id)
        sales.require_reach(session, order, viewer, missing=missing)
    return shipment


def _transition(shipment: Shipment, to: ShipmentStatus, actor_id: int | None) -> None:
    if to not in TRANSITIONS[shipment.status]:
        raise InvalidShipmentTransition(
            f"shipment {shipment.id} is {shipment.status.value} and cannot become {to.value}",
            details={"from": shipment.status.value, "to": to.value},
        )
    shipment.status = to
    shipment.updated_at = utcnow()
    shipment.updated_by_id = actor_id


def _tracking_number_used(session: Session, carrier: str, tracking_number: str) -> bool:
    found = session.exec(
        select(Shipment.id).where(
            Shipment.carrier == carrier, Shipment.tracking_number == tracking_number
        )
    ).first()
    return found is not None


def _tracking_number_taken(carrier: str, tracking_number: str) -> TrackingNumberTaken:
    return TrackingNumberTaken(
        f"{carrier} tracking number {tracking_number!r} is already used by another shipment",
        details={"carrier": carrier, "tracking_number": tracking_number},
    )


# --- reading shipments -----------------------------------------------------------------------


def get_shipment(session: Session, *, shipment_id: int, viewer: Viewer | None = None) -> Shipment:
    """The shipment; one ``viewer`` may not see is not found."""
    statement = select(Shipment).where(Shipment.id == shipment_id)
    visible = visible_where(session, viewer)
    if visible is not None:
        statement = statement.where(visible)
    shipment = session.exec(statement).first()
    if shipment is None:
        raise ShipmentNotFound(f"there is no shipment {shipment_id}")
    return shipment


def visible_where(session: Session, viewer: Viewer | None) -> sa.ColumnElement[bool] | None:
    # what hangs off an order is visible to whoever may read the order
    orders = visible_orders(session, viewer)
    return None if orders is None else col(Shipment.order_id).in_(orders)
