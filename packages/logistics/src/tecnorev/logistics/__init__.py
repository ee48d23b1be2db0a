"""Shipments of orders."""

from tecnorev.core import Module

module = Module(
    name="logistics",
    package="tecnorev.logistics",
    depends_on=("sales",),
    description="shipments",
)
