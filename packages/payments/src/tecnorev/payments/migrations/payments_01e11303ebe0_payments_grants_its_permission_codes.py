"""payments grants its permission codes

payments declares its permission codes (``tecnorev.payments.module.permissions``) and grants
them to the standard roles here, in its own branch: installing payments adds them, removing
its schema removes them. Where auth's seed already granted them (a database older than
auth_68f68bf2a9a1, which registered them as payments's), nothing changes, customisations
included; otherwise the codes are registered and the default grants made, to the roles that
exist. The codes and grants are written out here; the statements come from auth's frozen
migration operations (``tecnorev.auth.migration_ops``).

Revision ID: payments_01e11303ebe0
Revises: payments_7d5c61eff56a
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "payments_01e11303ebe0"
down_revision: str | Sequence[str] | None = "payments_7d5c61eff56a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "auth_68f68bf2a9a1"

MODULE = "payments"
CODES = {
    "payments:manage": "record payments and refunds of one's branches' orders",
    "payments:read_all": "see every branch's payments, and act on them",
}
GRANTS = {
    "admin": ("payments:manage", "payments:read_all"),
    "manager": ("payments:manage", "payments:read_all"),
}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
