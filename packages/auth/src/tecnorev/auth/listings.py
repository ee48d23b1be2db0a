"""Auth's users, on the listing contract (``tecnorev.core.listing``): each page with the
users' role names, read by one more statement for the whole page."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from tecnorev.auth import service
from tecnorev.auth.models import User
from tecnorev.auth.schemas import UserSummary
from tecnorev.core.listing import Listing, columns_of, equals
from tecnorev.core.web.types import BoolQuery

_user = User.__table__


def _with_roles(session: Session, users: list[dict[str, Any]]) -> None:
    names = service.role_names(session, [user["id"] for user in users])
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
