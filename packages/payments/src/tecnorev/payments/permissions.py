"""The permission codes payments's routes demand, and the standard roles payments grants them to.

The grants are data, made by payments's own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.
"""

from tecnorev.core import Permission

PAYMENTS_MANAGE = "payments:manage"
PAYMENTS_READ_ALL = "payments:read_all"

PERMISSIONS = (
    Permission(
        PAYMENTS_MANAGE,
        "record payments and refunds of one's branches' orders",
        roles=("admin", "manager"),
    ),
    Permission(
        PAYMENTS_READ_ALL,
        "see every branch's payments, and act on them",
        roles=("admin", "manager"),
    ),
)
