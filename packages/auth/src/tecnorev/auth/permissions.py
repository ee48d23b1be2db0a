"""auth's own permission codes, and the codes of every installed module.

A module declares the codes its routes demand on its descriptor (``Module.permissions``) and
grants them to the standard roles in a revision of its own branch; auth knows no other
module's codes.  A grant of a code no installed module declares (a module removed, or set
aside with ``tecnorev db forget``) is kept in the database and ignored.

Branch reach: a code held by branch staff (inventory's staff assignments) acts only on their
branches' orders, shipments, payments, stock and movements.  Reaching every branch is a code
of its own per module, ``<resource>:read_all``: with it the holder reads every branch's
resources and acts on them with the module's other codes.
"""

from __future__ import annotations

from functools import lru_cache

from tecnorev.core.module import Permission

USERS_READ = "users:read"
USERS_MANAGE = "users:manage"

# The roles auth seeds; a module's Permission.roles names some of them.
STANDARD_ROLES = ("admin", "manager", "clerk", "customer")

PERMISSIONS = (
    Permission(USERS_READ, "see users and the roles they hold", roles=("admin", "manager")),
    Permission(
        USERS_MANAGE,
        "create, change and deactivate users; grant and take away roles",
        roles=("admin",),
    ),
)


@lru_cache(maxsize=1)
def declared() -> frozenset[str]:
    """The codes of the installed modules (auth's included)."""
    from tecnorev.core.registry import get_registry

    return frozenset(get_registry().permissions)
