"""Categories, products and their images."""

from tecnorev.catalog.permissions import PERMISSIONS
from tecnorev.core import Module

module = Module(
    name="catalog",
    package="tecnorev.catalog",
    demo="tecnorev.catalog.demo:load",
    depends_on=("auth",),
    description="categories, products, images",
    permissions=PERMISSIONS,
)
