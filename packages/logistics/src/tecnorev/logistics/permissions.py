"""The permission codes logistics's routes demand, and the standard roles logistics grants them to.

The grants are data, made by logistics's own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.
"""

from tecnorev.core import Permission

SHIPMENTS_MANAGE = "shipments:manage"
SHIPMENTS_READ_ALL = "shipments:read_all"

PERMISSIONS = (
    Permission(
        SHIPMENTS_MANAGE,
        "ship and deliver the orders of one's branches",
        roles=("admin", "manager", "clerk"),
    ),
    Permission(
        SHIPMENTS_READ_ALL,
        "see every branch's shipments, and act on them",
        roles=("admin", "manager"),
    ),
)
