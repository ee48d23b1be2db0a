"""What auth adds to a module made by ``tecnorev module new`` that depends on it: a permission
code of its own, a route that demands it, and the revision of its branch that registers the
code and grants it to the standard roles (through :mod:`tecnorev.auth.migration_ops`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tecnorev.auth.migration_ops import PERMISSION_TABLE_REVISION

if TYPE_CHECKING:
    from tecnorev.core.scaffold import Scaffold

ROLES = ("admin", "manager")

_PERMISSIONS = '''"""The permission codes {name}'s routes demand, and the standard roles
{name} grants them to.

The grants are data, made by {name}'s own branch when it is installed (its revision
``...grants_its_permission_codes``) and removed with it.  A new code needs both: a
``Permission`` here and a revision granting it (see that one).
"""

from tecnorev.core import Permission

{constant} = "{code}"

PERMISSIONS = (
    Permission({constant}, "{description}", roles={roles}),
)
'''

_ROUTES = '''"""HTTP routes of {name}: parse, authorize, call the service, return."""

from __future__ import annotations

from typing import Annotated

from tecnorev.auth.deps import Principal, require_permission
from tecnorev.core.web import Router
from tecnorev.{name} import module, permissions
from tecnorev.{name}.config import {settings_class}

router = Router(prefix="/{name}", tags=["{name}"])
Manager = Annotated[Principal, require_permission(permissions.{constant})]


@router.get("/")
def describe() -> dict[str, object]:
    return {{"module": module.name, "depends_on": list(module.depends_on)}}


@router.get("/settings")
def current_settings(_: Manager) -> dict[str, object]:
    """What {name} is configured with (demands {code})."""
    return {{"page_size": {settings_class}().page_size}}
'''

_GRANTS = '''"""{name} grants its permission codes

{name} declares its permission codes (``tecnorev.{name}.permissions``) and grants them to
the standard roles here, in its own branch: installing {name} adds them, removing its schema
removes them.  The codes and grants are written out (a revision replays the same forever);
the statements come from auth's frozen migration operations.

Revision ID: {revision}
Revises: {down_revision}
Create Date: {created}
"""

from collections.abc import Sequence

from tecnorev.auth.migration_ops import grant_permission_codes, revoke_permission_codes

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = "{down_revision}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "{permission_table}"

MODULE = "{name}"
CODES = {{"{code}": "{description}"}}
GRANTS = {grants}


def upgrade() -> None:
    grant_permission_codes(MODULE, CODES, GRANTS)


def downgrade() -> None:
    revoke_permission_codes(MODULE, CODES)
'''


def module_files(scaffold: Scaffold) -> dict[str, str]:
    from tecnorev.core.scaffold import created_now, revision_id

    name = scaffold.name
    code = f"{name}:manage"
    fields = {
        "name": name,
        "code": code,
        "constant": f"{name.upper()}_MANAGE",
        "description": f"change {scaffold.title}",
        "roles": "(" + ", ".join(f'"{role}"' for role in ROLES) + ")",
        "settings_class": scaffold.settings_class,
    }
    revision = revision_id(name)
    grants = "{" + ", ".join(f'"{role}": ("{code}",)' for role in ROLES) + "}"
    grants_text = _GRANTS.format(
        **fields,
        revision=revision,
        down_revision=scaffold.first_revision,
        created=created_now(),
        permission_table=PERMISSION_TABLE_REVISION,
        grants=grants,
    )
    package = scaffold.package_dir
    return {
        f"{package}/permissions.py": _PERMISSIONS.format(**fields),
        f"{package}/routes.py": _ROUTES.format(**fields),
        f"{package}/migrations/{revision}_{name}_grants_its_permission_codes.py": grants_text,
    }
