"""What logistics refuses, each with the HTTP status and the stable code a client sees."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotFound


class ShipmentNotFound(NotFound):
    code = "shipment_not_found"


class OrderNotConfirmed(Conflict):
    """Only a confirmed order is shipped: a pending one may still be cancelled or unpaid."""

    code = "order_not_confirmed"


class OrderAlreadyHasShipment(Conflict):
    code = "order_already_has_shipment"


class TrackingNumberTaken(Conflict):
    code = "tracking_number_taken"


class InvalidShipmentTransition(Conflict):
    code = "invalid_shipment_transition"
