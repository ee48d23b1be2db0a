"""Branches, their staff, stock per branch and the movement ledger."""

from tecnorev.core import Module
from tecnorev.inventory.permissions import PERMISSIONS

module = Module(
    name="inventory",
    package="tecnorev.inventory",
    demo="tecnorev.inventory.demo:load",
    depends_on=("catalog",),
    description="branches, stock, movement ledger",
    permissions=PERMISSIONS,
)
