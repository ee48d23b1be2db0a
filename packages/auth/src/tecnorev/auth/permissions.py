"""Permission codes live in code; roles (in the database) grant them.

Branch reach: a code held by branch staff (inventory's staff assignments) acts only on their
branches' orders, shipments, payments, stock and movements.  Reaching every branch is a code
of its own per module, ``<resource>:read_all`` (named after sales' ``orders:read_all``): with
it the holder reads every branch's resources and acts on them with the module's other codes.
"""

from __future__ import annotations

USERS_READ = "users:read"
USERS_MANAGE = "users:manage"
CATALOG_MANAGE = "catalog:manage"
INVENTORY_READ = "inventory:read"
INVENTORY_READ_ALL = "inventory:read_all"
INVENTORY_ADJUST = "inventory:adjust"
INVENTORY_TRANSFER = "inventory:transfer"
BRANCHES_MANAGE = "branches:manage"
ORDERS_PLACE = "orders:place"
ORDERS_READ_ALL = "orders:read_all"
ORDERS_MANAGE = "orders:manage"
COUPONS_MANAGE = "coupons:manage"
SHIPMENTS_MANAGE = "shipments:manage"
SHIPMENTS_READ_ALL = "shipments:read_all"
PAYMENTS_MANAGE = "payments:manage"
PAYMENTS_READ_ALL = "payments:read_all"

ALL = frozenset(
    {
        USERS_READ,
        USERS_MANAGE,
        CATALOG_MANAGE,
        INVENTORY_READ,
        INVENTORY_READ_ALL,
        INVENTORY_ADJUST,
        INVENTORY_TRANSFER,
        BRANCHES_MANAGE,
        ORDERS_PLACE,
        ORDERS_READ_ALL,
        ORDERS_MANAGE,
        COUPONS_MANAGE,
        SHIPMENTS_MANAGE,
        SHIPMENTS_READ_ALL,
        PAYMENTS_MANAGE,
        PAYMENTS_READ_ALL,
    }
)
