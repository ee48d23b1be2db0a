"""inventory grants its permission codes

inventory declares its permission codes (``tecnorev.inventory.module.permissions``) and grants
them to the standard roles here, in its own branch: installing inventory adds them, removing
its schema removes them. Where auth's seed already granted them (a database older than
auth_68f68bf2a9a1, which registered them as inventory's), nothing changes, customisations
included; otherwise the codes are registered and the default grants made, to the roles that
exist. The codes and grants are written out here; the statements come from auth's frozen
migration operations (``tecnorev.auth.migration_ops``).

Revision ID: inventory_41bb73693ae7
Revises: inventory_218d64ae4d22
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "inventory_41bb73693ae7"
down_revision: str | Sequence[str] | None = "inventory_218d64ae4d22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "auth_68f68bf2a9a1"

MODULE = "inventory"
CODES = {
    "inventory:read": "see the stock and movements of one's branches",
    "inventory:read_all": "see every branch's stock, and act on it with the other codes",
    "inventory:adjust": "receive and adjust stock at one's branches",
    "inventory:transfer": "move stock between branches",
    "branches:manage": "open, change and close branches; assign their staff",
}
GRANTS = {
    "admin": (
        "inventory:read",
        "inventory:read_all",
        "inventory:adjust",
        "inventory:transfer",
        "branches:manage",
    ),
    "manager": (
        "inventory:read",
        "inventory:read_all",
        "inventory:adjust",
        "inventory:transfer",
        "branches:manage",
    ),
    "clerk": ("inventory:read", "inventory:adjust"),
}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
