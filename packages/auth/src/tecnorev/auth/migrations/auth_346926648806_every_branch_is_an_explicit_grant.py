"""every branch is an explicit grant

Staff act only on their branches' shipments, payments, stock and movements, as they already
did on orders; reaching every branch takes a code of its own per module, like sales'
``orders:read_all``: ``shipments:read_all``, ``payments:read_all`` and ``inventory:read_all``.
Until now ``shipments:manage`` and ``payments:manage`` read every branch's, and inventory had no
scope at all, so the roles that ran every branch (``admin`` and ``manager``) keep doing so
through these grants; a ``clerk`` gets none of them.  Upgrading grants them; downgrading
takes them back.

Both directions are idempotent (a grant already there, or already gone, changes nothing; a
database without these roles is left alone) and are plain INSERT ... SELECT and DELETE
statements that read nothing first, so they run alike on PostgreSQL and SQLite and in offline
``--sql`` mode.  Like the seed, the codes are written out here: a migration never imports
application code.

Revision ID: auth_346926648806
Revises: auth_8c5580aaf960
Create Date: 2026-12-14 10:02:51.318404
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "auth_346926648806"
down_revision: str | Sequence[str] | None = "auth_8c5580aaf960"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("admin", "manager")
PERMISSIONS = ("shipments:read_all", "payments:read_all", "inventory:read_all")

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
    for permission in PERMISSIONS:
        already_granted = (
            sa.select(role_permission.c.role_id)
            .where(role_permission.c.role_id == role.c.id)
            .where(role_permission.c.permission == permission)
            .exists()
        )
        op.execute(
            role_permission.insert().from_select(
                ["role_id", "permission"],
                sa.select(role.c.id, sa.literal(permission)).where(
                    role.c.name.in_(ROLES), ~already_granted
                ),
            )
        )


def downgrade() -> None:
    op.execute(
        role_permission.delete().where(
            role_permission.c.permission.in_(PERMISSIONS),
            role_permission.c.role_id.in_(sa.select(role.c.id).where(role.c.name.in_(ROLES))),
        )
    )
