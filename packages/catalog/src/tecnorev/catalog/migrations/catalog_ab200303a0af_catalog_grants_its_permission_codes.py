"""catalog grants its permission codes

catalog declares its permission codes (``tecnorev.catalog.module.permissions``) and grants
them to the standard roles here, in its own branch: installing catalog adds them, removing
its schema removes them. Where auth's seed already granted them (a database older than
auth_68f68bf2a9a1, which registered them as catalog's), nothing changes, customisations
included; otherwise the codes are registered and the default grants made, to the roles that
exist. The codes and grants are written out here; the statements come from auth's frozen
migration operations (``tecnorev.auth.migration_ops``).

Revision ID: catalog_ab200303a0af
Revises: catalog_68c333c29785
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "catalog_ab200303a0af"
down_revision: str | Sequence[str] | None = "catalog_68c333c29785"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "auth_68f68bf2a9a1"

MODULE = "catalog"
CODES = {"catalog:manage": "create and change categories, products and images"}
GRANTS = {"admin": ("catalog:manage",), "manager": ("catalog:manage",)}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
