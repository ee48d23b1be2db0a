"""Payments for orders: the worked example of adding a module."""

from tecnorev.core import Module
from tecnorev.payments.permissions import PERMISSIONS

module = Module(
    name="payments",
    package="tecnorev.payments",
    demo="tecnorev.payments.demo:load",
    depends_on=("sales",),
    description="payments",
    permissions=PERMISSIONS,
    # Sales never imports payments: a cancelled order's refund reacts to its event instead.
    subscribers=(("sales.order_cancelled", "tecnorev.payments.reactions:refund_cancelled_order"),),
)
