"""Auth's users, on the listing contract (``tecnorev.core.listing``): each page with the
users' role names, read in the page's own statement."""

from __future__ import annotations

import sqlalchemy as sa

from tecnorev.auth.models import Role, User, UserRole
from tecnorev.auth.schemas import UserSummary
from tecnorev.core.db import table_of
from tecnorev.core.listing import Listing, columns_of, equals, values_of
from tecnorev.core.web.types import BoolQuery

_user = table_of(User)
_role = table_of(Role)
_user_role = table_of(UserRole)

users = Listing(
    "users",
    columns={
        **columns_of(_user, "id email full_name is_active created_at"),
        # read with each user, in the page's one statement
        "roles": values_of(
            sa.select(_role.c.name)
            .join(_user_role, _role.c.id == _user_role.c.role_id)
            .where(_user_role.c.user_id == _user.c.id)
        ),
    },
    item=UserSummary,
    sorts=("id", "email"),
    unique=frozenset({"email"}),
    default_sort="id",
    filters=(equals("is_active", _user.c.is_active, BoolQuery, "may log in or not"),),
)
