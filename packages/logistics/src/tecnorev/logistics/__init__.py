"""Shipments of orders."""

from tecnorev.core import Module
from tecnorev.logistics.permissions import PERMISSIONS

module = Module(
    name="logistics",
    package="tecnorev.logistics",
    demo="tecnorev.logistics.demo:load",
    depends_on=("sales",),
    description="shipments",
    permissions=PERMISSIONS,
    subscribers=(
        (
            "sales.order_cancelled",
            "tecnorev.logistics.reactions:cancel_shipments_of_cancelled_order",
        ),
    ),
)
