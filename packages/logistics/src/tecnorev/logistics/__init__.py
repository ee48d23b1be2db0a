"""Shipments of orders."""

from tecnorev.core import Module

module = Module(
    name="logistics",
    package="tecnorev.logistics",
    demo="tecnorev.logistics.demo:load",
    depends_on=("sales",),
    description="shipments",
)
