"""The permission codes sales's routes demand, and the standard roles sales grants them to.

The grants are data, made by sales's own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.
"""

from tecnorev.core import Permission

ORDERS_PLACE = "orders:place"
ORDERS_READ_ALL = "orders:read_all"
ORDERS_MANAGE = "orders:manage"
COUPONS_MANAGE = "coupons:manage"

PERMISSIONS = (
    Permission(
        ORDERS_PLACE,
        "place orders and follow one's own",
        roles=("admin", "manager", "clerk", "customer"),
    ),
    Permission(
        ORDERS_READ_ALL,
        "see every branch's orders, and act on them with the other codes",
        roles=("admin", "manager"),
    ),
    Permission(
        ORDERS_MANAGE,
        "confirm and cancel the orders of one's branches",
        roles=("admin", "manager", "clerk"),
    ),
    Permission(COUPONS_MANAGE, "create and change coupons", roles=("admin", "manager")),
)
