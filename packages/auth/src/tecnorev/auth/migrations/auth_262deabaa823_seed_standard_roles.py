"""seed standard roles

The standard roles and the permission codes they grant, as they stood when this revision
was written (a migration never imports application code: it must replay the same forever).

Revision ID: auth_262deabaa823
Revises: auth_9745703af63a
Create Date: 2026-11-24 10:19:59.413414
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "auth_262deabaa823"
down_revision: str | Sequence[str] | None = "auth_9745703af63a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


ROLES: dict[str, tuple[str, list[str]]] = {
    "admin": (
        "Everything, including users and their roles",
        [
            "users:read",
            "users:manage",
            "catalog:manage",
            "inventory:read",
            "inventory:adjust",
            "inventory:transfer",
            "branches:manage",
            "orders:place",
            "orders:read_all",
            "orders:manage",
            "coupons:manage",
            "shipments:manage",
            "payments:manage",
        ],
    ),
    "manager": (
        "Runs the stores: catalogue, stock, orders, coupons, shipments, payments",
        [
            "users:read",
            "catalog:manage",
            "inventory:read",
            "inventory:adjust",
            "inventory:transfer",
            "branches:manage",
            "orders:place",
            "orders:read_all",
            "orders:manage",
            "coupons:manage",
            "shipments:manage",
            "payments:manage",
        ],
    ),
    "clerk": (
        "Works at a branch: stock, orders and shipments",
        [
            "inventory:read",
            "inventory:adjust",
            "orders:place",
            "orders:read_all",
            "orders:manage",
            "shipments:manage",
        ],
    ),
    "customer": ("Places and follows their own orders", ["orders:place"]),
}

role = sa.table(
    "role",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("description", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)
role_permission = sa.table(
    "role_permission",
    sa.column("role_id", sa.Integer),
    sa.column("permission", sa.String),
)


def upgrade() -> None:
    now = datetime.now(UTC)
    op.bulk_insert(
        role,
        [
            {"name": name, "description": description, "created_at": now, "updated_at": now}
            for name, (description, _) in ROLES.items()
        ],
        multiinsert=False,
    )
    for name, (_, permissions) in ROLES.items():
        for permission in permissions:
            op.execute(
                role_permission.insert().from_select(
                    ["role_id", "permission"],
                    sa.select(role.c.id, sa.literal(permission)).where(role.c.name == name),
                )
            )


def downgrade() -> None:
    names = list(ROLES)
    op.execute(
        role_permission.delete().where(
            role_permission.c.role_id.in_(sa.select(role.c.id).where(role.c.name.in_(names)))
        )
    )
    op.execute(role.delete().where(role.c.name.in_(names)))
