"""Logistics' collection, on the listing contract (``tecnorev.core.listing``)."""

from __future__ import annotations

from tecnorev.core.db import table_of
from tecnorev.core.listing import Listing, equals
from tecnorev.core.web.types import IdQuery
from tecnorev.logistics.models import Shipment, ShipmentStatus
from tecnorev.logistics.schemas import ShipmentSummary
from tecnorev.sales.service import orders_readable_by

_shipment = table_of(Shipment)

shipments = Listing(
    "shipments",
    columns={
        name: _shipment.c[name]
        for name in [
            "id",
            "order_id",
            "carrier",
            "tracking_number",
            "status",
            "shipped_at",
            "delivered_at",
            "created_at",
            "updated_at",
        ]
    },
    item=ShipmentSummary,
    sorts=("id",),
    default_sort="id",
    filters=(
        equals("order_id", _shipment.c.order_id, IdQuery, "of this order"),
        equals("status", _shipment.c.status, ShipmentStatus, "in this state"),
    ),
    # a caller without orders:read_all: what hangs off the orders they may read
    scopes={"viewer": lambda user: _shipment.c.order_id.in_(orders_readable_by(user))},
)
