"""sales grants its permission codes

sales declares its permission codes (``tecnorev.sales.module.permissions``) and grants
them to the standard roles here, in its own branch: installing sales adds them, removing
its schema removes them. Where auth's seed already granted them (a database older than
auth_68f68bf2a9a1, which registered them as sales's), nothing changes, customisations
included; otherwise the codes are registered and the default grants made, to the roles that
exist. The codes and grants are written out here; the statements come from auth's frozen
migration operations (``tecnorev.auth.migration_ops``).

Revision ID: sales_178394af59bf
Revises: sales_0db834b4b724
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "sales_178394af59bf"
down_revision: str | Sequence[str] | None = "sales_0db834b4b724"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "auth_68f68bf2a9a1"

MODULE = "sales"
CODES = {
    "orders:place": "place orders and follow one's own",
    "orders:read_all": "see every branch's orders, and act on them with the other codes",
    "orders:manage": "confirm and cancel the orders of one's branches",
    "coupons:manage": "create and change coupons",
}
GRANTS = {
    "admin": ("orders:place", "orders:read_all", "orders:manage", "coupons:manage"),
    "manager": ("orders:place", "orders:read_all", "orders:manage", "coupons:manage"),
    "clerk": ("orders:place", "orders:manage"),
    "customer": ("orders:place",),
}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
