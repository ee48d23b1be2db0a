"""Permission codes live in code; roles (in the database) grant them."""

from __future__ import annotations

USERS_READ = "users:read"
USERS_MANAGE = "users:manage"
CATALOG_MANAGE = "catalog:manage"
INVENTORY_READ = "inventory:read"
INVENTORY_ADJUST = "inventory:adjust"
INVENTORY_TRANSFER = "inventory:transfer"
BRANCHES_MANAGE = "branches:manage"
ORDERS_PLACE = "orders:place"
ORDERS_READ_ALL = "orders:read_all"
ORDERS_MANAGE = "orders:manage"
COUPONS_MANAGE = "coupons:manage"
SHIPMENTS_MANAGE = "shipments:manage"
PAYMENTS_MANAGE = "payments:manage"

ALL = frozenset(
    {
        USERS_READ,
        USERS_MANAGE,
        CATALOG_MANAGE,
        INVENTORY_READ,
        INVENTORY_ADJUST,
        INVENTORY_TRANSFER,
        BRANCHES_MANAGE,
        ORDERS_PLACE,
        ORDERS_READ_ALL,
        ORDERS_MANAGE,
        COUPONS_MANAGE,
        SHIPMENTS_MANAGE,
        PAYMENTS_MANAGE,
    }
)
