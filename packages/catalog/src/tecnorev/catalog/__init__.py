"""Categories, products and their images."""

from tecnorev.core import Module

module = Module(
    name="catalog",
    package="tecnorev.catalog",
    depends_on=("auth",),
    description="categories, products, images",
)
