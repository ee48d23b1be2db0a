"""Orders, their items, and coupons."""

from tecnorev.core import Module
from tecnorev.sales.permissions import PERMISSIONS

module = Module(
    name="sales",
    package="tecnorev.sales",
    demo="tecnorev.sales.demo:load",
    depends_on=("inventory",),
    description="orders, order items, coupons",
    permissions=PERMISSIONS,
)
