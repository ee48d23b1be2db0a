"""Auth's users, on the listing contract (``tecnorev.core.listing``): each page with the
users' role names, read by one more statement for the whole page."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tecnorev.auth.models import Role, User, UserRole
from tecnorev.auth.schemas import UserSummary
from tecnorev.core.db import table_of
from tecnorev.core.direct import Direct
from tecnorev.core.listing import Listing, columns_of, equals
from tecnorev.core.web.session import Connectable
from tecnorev.core.web.types import BoolQuery

_user = table_of(User)
_role = table_of(Role)
_user_role = table_of(UserRole)
# service.role_names' statement, built once and sent straight to the driver
_ROLES = Direct(
    sa.select(_user_role.c.user_id, _role.c.name)
    .join(_role, _role.c.id == _user_role.c.role_id)
    .where(_user_role.c.user_id.in_(sa.bindparam("user_ids", expanding=True)))
    .order_by(_role.c.name)
)


def _with_roles(session: Connectable, users: list[dict[str, Any]]) -> None:
    names: dict[int, list[str]] = {user["id"]: [] for user in users}
    for user_id, name in _ROLES.run(session.connection(), {"user_ids": list(names)}):
        names[user_id].append(name)
    for user in users:
        user["roles"] = names[user["id"]]


users = Listing(
    "users",
    columns=columns_of(_user, "id email full_name is_active created_at"),
    item=UserSummary,
    sorts=("id", "email"),
    unique=frozenset({"email"}),
    default_sort="id",
    filters=(equals("is_active", _user.c.is_active, BoolQuery, "may log in or not"),),
    expand=_with_roles,
)
