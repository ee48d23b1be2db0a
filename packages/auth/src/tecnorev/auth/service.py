"""Users, logins and roles: every rule of the auth module, as plain functions on a session.

A login is a *family* of refresh tokens.  Logging in opens a family; each refresh revokes
the token presented and issues its successor in the same family; access tokens carry the
family id, and ``deps.load_principal`` refuses them once no token of their family is live.
So revoking a family ends that login at once (logout), revoking all of a user's families
ends every login (password change, deactivation), and a rotated token that comes back
(someone kept a copy) revokes its family.

Functions flush, never commit: the caller's unit of work does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from pwdlib.exceptions import UnknownHashError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import orm
from sqlmodel import Session, col, select

from tecnorev.auth import callers
from tecnorev.auth.config import AuthConfig, get_auth_config
from tecnorev.auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    SelfLockout,
    TokenReused,
    UnknownRole,
    UnknownUser,
    WeakPassword,
    WrongPassword,
)
from tecnorev.auth.models import RefreshToken, Role, RolePermission, User, UserRole
from tecnorev.auth.permissions import USERS_MANAGE, declared
from tecnorev.auth.security import (
    burn_verification,
    create_access_token,
    hash_password,
    hash_refresh_token,
    new_family_id,
    new_refresh_token,
    verify_password,
)
from tecnorev.core.types import utcnow
from tecnorev.core.web.types import Email

EMAIL_MAX_LENGTH = 320
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 128
ADMIN_ROLE = "admin"

_BAD_LOGIN = "the email or password is not correct"
_EMAIL = TypeAdapter(Email)


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int  # seconds
    refresh_token: str
    login_id: str


@dataclass(frozen=True)
class UserAccount:
    """A user with the names of its roles, sorted."""

    user: User
    roles: list[str]


@dataclass(frozen=True)
class RoleGrants:
    role: Role
    permissions: list[str]


# --- passwords and emails -------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """The stored form of an email: emails are compared case-insensitively."""
    try:
        return _EMAIL.validate_python(email)
    except ValidationError as exc:
        raise InvalidEmail(f"{email!r} is not an email address") from exc


def check_password_policy(password: str, *, email: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {PASSWORD_MAX_LENGTH} characters")
    if password.strip().lower() == email.strip().lower():
        raise WeakPassword("the password must not be the email address")


def _set_password(user: User, password: str, *, actor_id: int | None) -> None:
    check_password_policy(password, email=user.email)
    user.hashed_password = hash_password(password)
    user.updated_by_id = actor_id


def _verify(password: str, hashed: str) -> tuple[bool, str | None]:
    try:
        return verify_password(password, hashed)
    except UnknownHashError:  # a hash this installation cannot read never matches
        return False, None


# --- logins -----------------------------------------------------------------------------------


def authenticate(session: Session, *, email: str, password: str) -> User:
    """The active user with this email and password; the same refusal for every failure."""
    normalized = email.strip().lower()
    user = None
    if 0 < len(normalized) <= EMAIL_MAX_LENGTH and "\x00" not in normalized:
        user = session.exec(select(User).where(User.email == normalized)).first()
    if user is None:
        burn_verification(password)  # an unknown email answers no faster than a known one
        raise InvalidCredentials(_BAD_LOGIN)
    ok, new_hash = _verify(password, user.hashed_password)
    if not ok or not user.is_active:
        raise InvalidCredentials(_BAD_LOGIN)
    if new_hash:  # hashed with older parameters: upgrade while the password is at hand
        user.hashed_password = new_hash
        session.add(user)
    return user


def _issue(session: Session, *, user_id: int, login_id: str, config: AuthConfig) -> IssuedTokens:
    token, token_hash = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user_id,
            token_hash=token_hash,
            family_id=login_id,
            expires_at=utcnow() + config.refresh_ttl,
        )
    )
    session.flush()
    access, _ = create_access_token(user_id, login_id, config)
    return IssuedTokens(
        access_token=access,
        expires_in=int(config.access_ttl.total_seconds()),
        refresh_token=token,
        login_id=login_id,
    )


def open_login(session: Session, *, user_id: int, config: AuthConfig | None = None) -> IssuedTokens:
    """A new login (refresh token family) for ``user_id`` and its first tokens."""
    return _issue(
        session, user_id=user_id, login_id=new_family_id(), config=config or get_auth_config()
    )


def log_in(
    session: Session, *, email: str, password: str, config: AuthConfig | None = None
) -> IssuedTokens:
    user = authenticate(session, email=email, password=password)
    assert user.id is not None  # a stored user
    return open_login(session, user_id=user.id, config=config)


def refresh_login(
    session: Session, *, refresh_token: str, config: AuthConfig | None = None
) -> IssuedTokens:
    """Rotate ``refresh_token``: revoke it and issue its successor with a new access token.

    A token that was already rotated is reuse: its whole family is revoked (and that is
    stored although the request fails).
    """
    config = config or get_auth_config()
    token_hash = hash_refresh_token(refresh_token)
    unknown = InvalidToken("the refresh token is not valid; log in again")
    owner_id = session.exec(
        select(RefreshToken.user_id).where(RefreshToken.token_hash == token_hash)
    ).first()
    if owner_id is None:
        raise unknown
    user = _lock_user(session, owner_id)  # the user's lock first, as every login change
    presented = session.exec(
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_hash)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if user is None or presented is None:  # deleted meanwhile
        raise unknown
    if presented.revoked_at is not None:
        _refuse_revoked(session, presented)
    now = utcnow()
    if presented.expires_at <= now:
        raise InvalidToken("the refresh token has expired; log in again")
    if not user.is_active:
        raise InvalidToken("this user is deactivated")
    # Conditional, so that of two refreshes racing with one token only one rotates it (on a
    # backend without row locks too); the other counts as reuse.
    rotated = _updated(
        session.execute(
            sa.update(RefreshToken)
            .where(col(RefreshToken.id) == presented.id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )
    )
    if rotated != 1:
        _refuse_reuse(session, presented.family_id)
    assert user.id is not None  # a stored user
    return _issue(session, user_id=user.id, login_id=presented.family_id, config=config)


def _lock_user(session: Session, user_id: int) -> User | None:
    """The user's row, locked until the transaction ends.

    Every change to a user's logins takes this lock first.  Without it a refresh running
    next to a logout, password change or deactivation could insert a successor token the
    revoking UPDATE never sees (it was not committed when that UPDATE started), leaving the
    login alive.  ``FOR NO KEY UPDATE``: rows merely referencing the user are not blocked.
    The caller caches of this process forget the user as the change commits (the other
    workers', when PostgreSQL's notification reaches them).
    """
    callers.changed(session, user_id)
    return session.exec(
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).first()


def _locked_user(session: Session, user_id: int) -> User:
    user = _lock_user(session, user_id)
    if user is None:
        raise UnknownUser(f"there is no user {user_id}")
    return user


def _refuse_revoked(session: Session, presented: RefreshToken) -> None:
    successor = session.exec(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == presented.family_id, col(RefreshToken.id) > presented.id)
        .limit(1)
    ).first()
    if successor is None:  # the newest token of a login that was ended, not a copy
        raise InvalidToken("this login has ended (logged out or revoked); log in again")
    _refuse_reuse(session, presented.family_id)


def _refuse_reuse(session: Session, login_id: str) -> None:
    _revoke(session, col(RefreshToken.family_id) == login_id)
    raise TokenReused(
        "this refresh token was already used, so a copy of it may be in other hands; "
        "every token of this login is now revoked: log in again"
    )


def end_login(session: Session, *, user_id: int, login_id: str) -> int:
    """End one login of the user (log out): every live token of its family.  Returns how
    many were live."""
    _locked_user(session, user_id)
    return _revoke(
        session, col(RefreshToken.family_id) == login_id, col(RefreshToken.user_id) == user_id
    )


def _end_all_logins(session: Session, user: User) -> None:
    """Revoke every token of ``user``, whose row the caller has locked."""
    _revoke(session, col(RefreshToken.user_id) == user.id)


def _revoke(session: Session, *which: sa.ColumnElement[bool]) -> int:
    return _updated(
        session.execute(
            sa.update(RefreshToken)
            .where(*which, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    )


def _updated(result: sa.Result[Any]) -> int:
    """The rows an UPDATE changed.  Its result is a ``CursorResult``, which has the count;
    ``Session.execute`` is declared to return a plain ``Result`` for any statement."""
    return cast(sa.CursorResult[Any], result).rowcount


def change_password(
    session: Session, *, user_id: int, current_password: str, new_password: str
) -> None:
    """Change one's own password; every login of the user ends, this one included."""
    user = _locked_user(session, user_id)
    ok, _ = _verify(current_password, user.hashed_password)
    if not ok:
        raise WrongPassword("the current password is not correct")
    _set_password(user, new_password, actor_id=user_id)
    session.add(user)
    _end_all_logins(session, user)
    session.flush()


def reset_password(session: Session, *, email: str, password: str) -> User:
    """An operator's reset (no current password): sets it and ends the user's logins."""
    found = user_by_email(session, email)
    if found is None:
        raise UnknownUser(f"there is no user with email {normalize_email(email)!r}")
    assert found.id is not None  # a stored user
    user = _locked_user(session, found.id)
    _set_password(user, password, actor_id=None)
    session.add(user)
    _end_all_logins(session, user)
    session.flush()
    return user


# --- users and roles --------------------------------------------------------------------------


def user_by_email(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == normalize_email(email))).first()


def _get(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(f"there is no user {user_id}")
    return user


def role_names(session: orm.Session, user_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each user's role names, by name, in one statement.  Any SQLAlchemy session: the users
    listing passes the one it reads with."""
    names: dict[int, list[str]] = {user_id: [] for user_id in user_ids}
    if user_ids:
        rows = session.execute(
            select(UserRole.user_id, Role.name)
            .join(Role, col(Role.id) == UserRole.role_id)
            .where(col(UserRole.user_id).in_(user_ids))
            .order_by(Role.name)
        )
        for user_id, name in rows:
            names[user_id].append(name)
    return names


def _account(session: Session, user: User) -> UserAccount:
    assert user.id is not None  # a stored user
    return UserAccount(user, role_names(session, [user.id])[user.id])


def _role_ids(session: Session, names: Iterable[str]) -> dict[str, int]:
    wanted = set(names)
    # cast: an id read from the table is never NULL (the model's ``int | None`` is for a new row)
    found = (
        cast(
            dict[str, int],
            dict(session.exec(select(Role.name, Role.id).where(col(Role.name).in_(wanted))).all()),
        )
        if wanted
        else {}
    )
    unknown = sorted(wanted - set(found))
    if unknown:
        raise UnknownRole(f"no such role: {', '.join(unknown)}", details={"roles": unknown})
    return found


def get_user(session: Session, *, user_id: int) -> UserAccount:
    return _account(session, _get(session, user_id))


def create_user(
    session: Session,
    *,
    email: str,
    password: str,
    full_name: str = "",
    roles: Iterable[str] = (),
    created_by_id: int | None = None,
) -> UserAccount:
    email = normalize_email(email)
    if session.exec(select(User.id).where(User.email == email)).first() is not None:
        raise EmailTaken(f"a user with email {email!r} already exists")
    role_ids = _role_ids(session, roles)
    check_password_policy(password, email=email)
    user = User(
        email=email,
        full_name=full_name,
        hashed_password=hash_password(password),
        created_by_id=created_by_id,
        updated_by_id=created_by_id,
    )
    session.add(user)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:  # created concurrently since the check above
        raise EmailTaken(f"a user with email {email!r} already exists") from exc
    assert user.id is not None  # set by the flush
    session.add_all(UserRole(user_id=user.id, role_id=role_id) for role_id in role_ids.values())
    session.flush()
    return UserAccount(user, sorted(role_ids))


def create_admin(session: Session, *, email: str, password: str) -> UserAccount:
    return create_user(session, email=email, password=password, roles=[ADMIN_ROLE])


def update_user(
    session: Session,
    *,
    user_id: int,
    actor_id: int,
    full_name: str | None = None,
    is_active: bool | None = None,
) -> UserAccount:
    """Change the fields given; deactivating a user ends every login of theirs."""
    user = _locked_user(session, user_id)
    if is_active is False and user_id == actor_id:
        raise SelfLockout("you cannot deactivate yourself; ask another administrator")
    if full_name is not None:
        user.full_name = full_name
    if is_active is not None and is_active != user.is_active:
        user.is_active = is_active
        if not is_active:
            _end_all_logins(session, user)
    user.updated_by_id = actor_id
    session.add(user)
    session.flush()
    return _account(session, user)


def set_user_roles(
    session: Session, *, user_id: int, roles: Iterable[str], actor_id: int
) -> UserAccount:
    """Make ``roles`` the user's complete set of roles."""
    user = _get(session, user_id)
    callers.changed(session, user_id)
    wanted = _role_ids(session, roles)
    if user_id == actor_id and not _grants(session, wanted.values(), USERS_MANAGE):
        raise SelfLockout(
            f"these roles would take away your own {USERS_MANAGE!r} permission; "
            "ask another administrator to do it"
        )
    held = set(session.exec(select(UserRole.role_id).where(UserRole.user_id == user_id)))
    keep = set(wanted.values())
    if held - keep:
        session.execute(
            sa.delete(UserRole)
            .where(col(UserRole.user_id) == user_id, col(UserRole.role_id).in_(held - keep))
            .execution_options(synchronize_session=False)
        )
    session.add_all(UserRole(user_id=user_id, role_id=r) for r in keep - held)
    user.updated_by_id = actor_id
    user.updated_at = utcnow()
    session.add(user)
    session.flush()
    return UserAccount(user, sorted(wanted))


def _grants(session: Session, role_ids: Iterable[int], permission: str) -> bool:
    ids = list(role_ids)
    if not ids:
        return False
    found = session.exec(
        select(RolePermission.role_id)
        .where(col(RolePermission.role_id).in_(ids), RolePermission.permission == permission)
        .limit(1)
    ).first()
    return found is not None


def list_roles(session: Session) -> list[RoleGrants]:
    roles = list(session.exec(select(Role).order_by(Role.name)))
    # keyed by ``Role.id`` as the model declares it (every stored role has one)
    granted: dict[int | None, list[str]] = {role.id: [] for role in roles}
    for role_id, permission in session.exec(
        select(RolePermission.role_id, RolePermission.permission).order_by(
            RolePermission.permission
        )
    ):
        if permission in declared():  # codes of modules no longer installed are ignored
            granted.setdefault(role_id, []).append(permission)
    return [RoleGrants(role, granted[role.id]) for role in roles]
