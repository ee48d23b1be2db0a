"""Payments for orders: the worked example of adding a module."""

from tecnorev.core import Module

module = Module(
    name="payments",
    package="tecnorev.payments",
    depends_on=("sales",),
    description="payments",
)
