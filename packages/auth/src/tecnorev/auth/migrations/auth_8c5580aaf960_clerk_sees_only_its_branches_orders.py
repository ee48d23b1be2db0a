"""clerk sees only its branches' orders

The seeded ``clerk`` role granted ``orders:read_all``, so every clerk read every branch's
orders.  A clerk is branch staff: sales already shows staff the orders of the branches they are
assigned to (inventory's staff assignments), and only ``admin`` and ``manager`` keep
``orders:read_all``.  Upgrading takes the grant away; downgrading gives it back.

Both directions are idempotent (a grant already gone, or already there, changes nothing; a
database without a ``clerk`` role is left alone) and are plain DELETE and INSERT ... SELECT
statements that read nothing first, so they run alike on PostgreSQL and SQLite and in offline
``--sql`` mode.  Like the seed, the codes are written out here: a migration never imports
application code.

Revision ID: auth_8c5580aaf960
Revises: auth_262deabaa823
Create Date: 2026-11-24 17:01:40.205967
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "auth_8c5580aaf960"
down_revision: str | Sequence[str] | None = "auth_262deabaa823"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "clerk"
PERMISSION = "orders:read_all"

role = sa.table(
    "role",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
)
role_permission = sa.table(
    "role_permission",
    sa.column("role_id", sa.Integer),
    sa.column("permission", sa.String),
)


def upgrade() -> None:
    op.execute(
        role_permission.delete().where(
            role_permission.c.permission == PERMISSION,
            role_permission.c.role_id.in_(sa.select(role.c.id).where(role.c.name == ROLE)),
        )
    )


def downgrade() -> None:
    already_granted = (
        sa.select(role_permission.c.role_id)
        .where(role_permission.c.role_id == role.c.id)
        .where(role_permission.c.permission == PERMISSION)
        .exists()
    )
    op.execute(
        role_permission.insert().from_select(
            ["role_id", "permission"],
            sa.select(role.c.id, sa.literal(PERMISSION)).where(
                role.c.name == ROLE, ~already_granted
            ),
        )
    )
