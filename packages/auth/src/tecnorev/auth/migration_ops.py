"""Operations that other modules' revisions call to register their permission codes.

A revision replays the same forever, so it never imports application code that changes with
releases (models, services, a module's current ``permissions``). These functions are the
exception by contract: **frozen** — once released, what one of them writes never changes; a
new behaviour gets a new function. They touch only auth's ``permission``, ``role`` and
``role_permission`` tables, described here as lightweight tables, and issue plain statements
that read nothing first, so they run alike on PostgreSQL and SQLite and in offline ``--sql``
mode.

A module's grants revision writes its codes and default grants out in full and calls them::

    depends_on = "auth_68f68bf2a9a1"  # the revision that creates ``permission``

    def upgrade() -> None:
        grant_permission_codes("shipping", CODES, GRANTS)

    def downgrade() -> None:
        revoke_permission_codes("shipping", CODES)
"""

from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from alembic import op

# The revision that creates the table of codes: a grants revision depends on it.
PERMISSION_TABLE_REVISION = "auth_68f68bf2a9a1"

_permission = sa.table(
    "permission",
    sa.column("code", sa.String),
    sa.column("module", sa.String),
    sa.column("description", sa.String),
)
_role = sa.table("role", sa.column("id", sa.Integer), sa.column("name", sa.String))
_role_permission = sa.table(
    "role_permission",
    sa.column("role_id", sa.Integer),
    sa.column("permission", sa.String),
)


def grant_permission_codes(
    module: str, codes: Mapping[str, str], grants: Mapping[str, Iterable[str]]
) -> None:
    """Register ``codes`` (code -> description) as ``module``'s and grant the defaults.

    ``grants`` maps a role name to the codes it receives; roles that do not exist are
    skipped. Where ``module`` already has codes registered (auth's older seed granted them,
    or an operator customised the grants), no grant is made, so customisations survive.
    """
    # Evaluated per statement, before the codes below are registered.
    registered = sa.exists().where(_permission.c.module == module)
    for role_name, role_codes in grants.items():
        for code in role_codes:
            granted = (
                sa.select(_role_permission.c.role_id)
                .where(_role_permission.c.role_id == _role.c.id)
                .where(_role_permission.c.permission == code)
                .exists()
            )
            op.execute(
                _role_permission.insert().from_select(
                    ["role_id", "permission"],
                    sa.select(_role.c.id, sa.literal(code)).where(
                        _role.c.name == role_name, ~registered, ~granted
                    ),
                )
            )
    for code, description in codes.items():
        op.execute(
            _permission.insert().from_select(
                ["code", "module", "description"],
                sa.select(sa.literal(code), sa.literal(module), sa.literal(description)).where(
                    ~sa.exists().where(_permission.c.code == code)
                ),
            )
        )


def revoke_permission_codes(module: str, codes: Iterable[str]) -> None:
    """Remove ``module``'s codes and every grant of them."""
    op.execute(_role_permission.delete().where(_role_permission.c.permission.in_(list(codes))))
    op.execute(_permission.delete().where(_permission.c.module == module))
