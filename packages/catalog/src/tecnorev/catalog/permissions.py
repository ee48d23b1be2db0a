"""The permission codes catalog's routes demand, and the standard roles catalog grants them to.

The grants are data, made by catalog's own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.
"""

from tecnorev.core import Permission

CATALOG_MANAGE = "catalog:manage"

PERMISSIONS = (
    Permission(
        CATALOG_MANAGE,
        "create and change categories, products and images",
        roles=("admin", "manager"),
    ),
)
