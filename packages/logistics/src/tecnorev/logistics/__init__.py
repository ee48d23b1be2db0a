"""Shipments of orders."""

from tecnorev.core import Module

module = Module(
    name="logistics",
    package="tecnorev.logistics",
    demo="tecnorev.logistics.demo:load",
    depends_on=("sales",),
    description="shipments",
    subscribers=(
        (
            "sales.order_cancelled",
            "tecnorev.logistics.reactions:cancel_shipments_of_cancelled_order",
        ),
    ),
)
