"""permission codes belong to their modules

Each module now declares its permission codes and grants them to the standard roles in a
revision of its own branch, so a code exists only where its module is installed. This revision
makes the table of the codes in use (``permission``: code, owning module, description) and
hands the grants auth's seed made over to their modules:

- auth's own codes are registered;
- the codes of a module whose tables are present (its branch is applied) are registered as
  that module's, and its grants stay exactly as they are, customisations included; the
  module's own grants revision then finds its codes there and changes nothing;
- grants of codes whose module is absent are removed: the module, when installed, grants its
  defaults itself.

So every existing database keeps the same effective permissions. Both directions are plain
statements that read nothing first (a module's presence is a subquery on the catalogue), so
they run alike on PostgreSQL and SQLite and in offline ``--sql`` mode. The codes are written
out here: a migration never imports application code.

Revision ID: auth_68f68bf2a9a1
Revises: auth_346926648806
Create Date: 2026-12-05 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "auth_68f68bf2a9a1"
down_revision: str | Sequence[str] | None = "auth_346926648806"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTH_CODES = {
    "users:read": "see users and the roles they hold",
    "users:manage": "create, change and deactivate users; grant and take away roles",
}
# module -> (a table its first revision creates, its codes as auth's seed granted them)
MODULE_CODES: dict[str, tuple[str, dict[str, str]]] = {
    "catalog": ("product", {"catalog:manage": "create and change categories, products and images"}),
    "inventory": (
        "branch",
        {
            "inventory:read": "see the stock and movements of one's branches",
            "inventory:read_all": "see every branch's stock, and act on it with the other codes",
            "inventory:adjust": "receive and adjust stock at one's branches",
            "inventory:transfer": "move stock between branches",
            "branches:manage": "open, change and close branches; assign their staff",
        },
    ),
    "sales": (
        "order",
        {
            "orders:place": "place orders and follow one's own",
            "orders:read_all": "see every branch's orders, and act on them with the other codes",
            "orders:manage": "confirm and cancel the orders of one's branches",
            "coupons:manage": "create and change coupons",
        },
    ),
    "logistics": (
        "shipment",
        {
            "shipments:manage": "ship and deliver the orders of one's branches",
            "shipments:read_all": "see every branch's shipments, and act on them",
        },
    ),
    "payments": (
        "payment",
        {
            "payments:manage": "record payments and refunds of one's branches' orders",
            "payments:read_all": "see every branch's payments, and act on them",
        },
    ),
}

permission = sa.table(
    "permission",
    sa.column("code", sa.String),
    sa.column("module", sa.String),
    sa.column("description", sa.String),
)
role_permission = sa.table(
    "role_permission",
    sa.column("role_id", sa.Integer),
    sa.column("permission", sa.String),
)


def _table_present(name: str) -> sa.ColumnElement[bool]:
    if op.get_context().dialect.name == "sqlite":
        catalogue = sa.table("sqlite_master", sa.column("type"), sa.column("name"))
        return sa.exists().where(catalogue.c.type == "table", catalogue.c.name == name)
    tables = sa.table(
        "tables",
        sa.column("table_schema"),
        sa.column("table_name"),
        schema="information_schema",
    )
    return sa.exists().where(
        tables.c.table_schema == sa.func.current_schema(), tables.c.table_name == name
    )


def _register(code: str, module: str, description: str, *when: sa.ColumnElement[bool]) -> None:
    op.execute(
        permission.insert().from_select(
            ["code", "module", "description"],
            sa.select(sa.literal(code), sa.literal(module), sa.literal(description)).where(*when),
        )
    )


def upgrade() -> None:
    op.create_table(
        "permission",
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("module", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_permission")),
    )
    op.create_index(op.f("ix_permission_module"), "permission", ["module"], unique=False)
    for code, description in AUTH_CODES.items():
        _register(code, "auth", description)
    for module, (table, codes) in MODULE_CODES.items():
        present = _table_present(table)
        for code, description in codes.items():
            _register(code, module, description, present)
    op.execute(
        role_permission.delete().where(
            role_permission.c.permission.not_in(sa.select(permission.c.code))
        )
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_permission_module"), table_name="permission")
    op.drop_table("permission")
