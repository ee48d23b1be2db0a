"""Helpers for tests of any module's routes: users with given roles or permissions, and the
``Authorization`` header of a live login for them."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlmodel import Session, select

from tecnorev.auth.config import get_auth_config
from tecnorev.auth.models import RefreshToken, Role, RolePermission, User, UserRole
from tecnorev.auth.permissions import declared
from tecnorev.auth.security import (
    create_access_token,
    hash_password,
    new_family_id,
    new_refresh_token,
)
from tecnorev.core.types import utcnow

PASSWORD = "correct-horse-battery-staple"
_HASHES: dict[str, str] = {}


def _hash(password: str) -> str:
    # argon2 is slow on purpose; tests create many users with the same password
    if password not in _HASHES:
        _HASHES[password] = hash_password(password)
    return _HASHES[password]


def _stored(row_id: int | None) -> int:
    """The id of a row the database holds (set by a flush, or read from the table)."""
    assert row_id is not None
    return row_id


def create_user(
    session: Session,
    email: str,
    *,
    roles: Iterable[str] = (),
    permissions: Iterable[str] | None = None,
    password: str = PASSWORD,
    full_name: str = "",
) -> User:
    """A user holding the seeded ``roles`` and, if given, a role of its own granting exactly
    ``permissions``.  Flushed, not committed."""
    user = User(email=email, full_name=full_name, hashed_password=_hash(password))
    session.add(user)
    session.flush()
    role_ids = [
        _stored(session.exec(select(Role.id).where(Role.name == name)).one()) for name in roles
    ]
    if permissions is not None:
        own = Role(name=f"only-{user.id}", description=f"test role of {email}")
        session.add(own)
        session.flush()
        own_id = _stored(own.id)
        session.add_all(RolePermission(role_id=own_id, permission=p) for p in permissions)
        role_ids.append(own_id)
    user_id = _stored(user.id)
    session.add_all(UserRole(user_id=user_id, role_id=r) for r in role_ids)
    session.flush()
    return user


def all_permissions_but(permission: str) -> set[str]:
    return set(declared()) - {permission}


def login_header(session: Session, user_id: int) -> dict[str, str]:
    """The header of a fresh login for ``user_id`` (as the login endpoint opens one).
    Flushed, not committed."""
    _, token_hash = new_refresh_token()
    family = new_family_id()
    session.add(
        RefreshToken(
            user_id=user_id,
            token_hash=token_hash,
            family_id=family,
            expires_at=utcnow() + get_auth_config().refresh_ttl,
        )
    )
    session.flush()
    access, _ = create_access_token(user_id, family)
    return {"Authorization": f"Bearer {access}"}


def user_header(
    engine: sa.Engine,
    email: str,
    *,
    roles: Iterable[str] = (),
    permissions: Iterable[str] | None = None,
) -> dict[str, str]:
    """Create a user and a login for it, committed; return its header."""
    with Session(engine) as session:
        user = create_user(session, email, roles=roles, permissions=permissions)
        header = login_header(session, _stored(user.id))
        session.commit()
    return header
