"""The permission codes inventory's routes demand, and the standard roles inventory grants them to.

The grants are data, made by inventory's own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.
"""

from tecnorev.core import Permission

INVENTORY_READ = "inventory:read"
INVENTORY_READ_ALL = "inventory:read_all"
INVENTORY_ADJUST = "inventory:adjust"
INVENTORY_TRANSFER = "inventory:transfer"
BRANCHES_MANAGE = "branches:manage"

PERMISSIONS = (
    Permission(
        INVENTORY_READ,
        "see the stock and movements of one's branches",
        roles=("admin", "manager", "clerk"),
    ),
    Permission(
        INVENTORY_READ_ALL,
        "see every branch's stock, and act on it with the other codes",
        roles=("admin", "manager"),
    ),
    Permission(
        INVENTORY_ADJUST,
        "receive and adjust stock at one's branches",
        roles=("admin", "manager", "clerk"),
    ),
    Permission(INVENTORY_TRANSFER, "move stock between branches", roles=("admin", "manager")),
    Permission(
        BRANCHES_MANAGE,
        "open, change and close branches; assign their staff",
        roles=("admin", "manager"),
    ),
)
