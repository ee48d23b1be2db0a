"""logistics grants its permission codes

logistics declares its permission codes (``tecnorev.logistics.module.permissions``) and grants
them to the standard roles here, in its own branch: installing logistics adds them, removing
its schema removes them. Where auth's seed already granted them (a database older than
auth_68f68bf2a9a1, which registered them as logistics's), nothing changes, customisations
included; otherwise the codes are registered and the default grants made, to the roles that
exist. The codes and grants are written out here; the statements come from auth's frozen
migration operations (``tecnorev.auth.migration_ops``).

Revision ID: logistics_7f0a83034246
Revises: logistics_4bb78629b483
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "logistics_7f0a83034246"
down_revision: str | Sequence[str] | None = "logistics_4bb78629b483"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "auth_68f68bf2a9a1"

MODULE = "logistics"
CODES = {
    "shipments:manage": "ship and deliver the orders of one's branches",
    "shipments:read_all": "see every branch's shipments, and act on them",
}
GRANTS = {
    "admin": ("shipments:manage", "shipments:read_all"),
    "manager": ("shipments:manage", "shipments:read_all"),
    "clerk": ("shipments:manage",),
}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
