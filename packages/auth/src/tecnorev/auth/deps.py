"""Who is calling, and may they: ``CurrentUser`` and ``require_permission`` for every module's
routes.

The caller is read from the database in one statement (the user, the permissions its roles
grant, and whether its login is still live), so deactivating a user, changing its roles,
logging out or changing its password takes effect at once rather than when the access token
expires.  On PostgreSQL a worker reuses what it read until the database notifies a change to
it (``tecnorev.auth.callers``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel import Session

from tecnorev.auth.callers import cache_of
from tecnorev.auth.permissions import declared
from tecnorev.auth.security import AccessClaims, decode_access_token
from tecnorev.core.direct import Direct
from tecnorev.core.errors import NotAuthenticated, PermissionDenied
from tecnorev.core.logs import bind_user
from tecnorev.core.web import API_PREFIX, SessionDep, run_read
from tecnorev.core.web.session import Connectable, primary_reader

TOKEN_URL = f"{API_PREFIX}/auth/token"
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    id: int
    email: str
    permissions: frozenset[str]
    # the login family the access token belongs to (what logging out revokes)
    login_id: str = ""

    def can(self, permission: str) -> bool:
        return permission in self.permissions


_PRINCIPAL = Direct(
    sa.text(
        """
    SELECT u.email, u.is_active, rp.permission,
           EXISTS (SELECT 1 FROM refresh_token rt
                   WHERE rt.family_id = :family AND rt.user_id = u.id
                     AND rt.revoked_at IS NULL) AS live
    FROM "user" u
    LEFT JOIN user_role ur ON ur.user_id = u.id
    LEFT JOIN role_permission rp ON rp.role_id = ur.role_id
    WHERE u.id = :user_id
    """
    )
)


def load_principal(session: Connectable, user_id: int, family_id: str) -> Principal:
    """The caller, as the worker's cache keeps it or read (and then kept)."""
    cache = cache_of(session.get_bind())
    if cache is None:
        return _read_principal(session, user_id, family_id)
    found = cache.get(user_id, family_id)
    if found is not None:
        return found
    generation = cache.generation  # before reading: a change notified meanwhile is not kept
    principal = _read_principal(session, user_id, family_id)
    cache.keep(principal, generation)
    return principal


def _read_principal(session: Connectable, user_id: int, family_id: str) -> Principal:
    # every request that names its caller sends this: straight to the driver (core.direct)
    params = {"user_id": user_id, "family": family_id}
    rows = _PRINCIPAL.run(session.connection(), params).all()
    if not rows:
        raise NotAuthenticated("the access token's user no longer exists")
    email, active, _, live = rows[0]
    if not active:
        raise NotAuthenticated("this user is deactivated")
    if not live:
        raise NotAuthenticated("this login has ended (logged out or password changed)")
    # a grant of a code no installed module declares is ignored
    permissions = frozenset(r[2] for r in rows if r[2] is not None) & declared()
    return Principal(user_id, email, permissions, login_id=family_id)


BearerToken = Annotated[str | None, Depends(_bearer)]


async def current_user(session: SessionDep, token: BearerToken) -> Principal:
    if not token:
        raise NotAuthenticated("not authenticated: send 'Authorization: Bearer <access token>'")
    # the token is checked here, on the event loop (no I/O); only the lookup needs a thread.
    # On the request's own session: a route that writes then holds one connection, so the
    # pools bound what a worker opens (on the reading pool, every request behind a login
    # would fill it); a route that only reads takes a ``Caller`` instead.
    claims = decode_access_token(token)
    bind_user(claims.user_id)
    cache = cache_of(session.get_bind())
    found = cache.get(claims.user_id, claims.family_id) if cache is not None else None
    if found is not None:  # no thread needed
        return found
    return await run_in_threadpool(load_principal, session, claims.user_id, claims.family_id)


def _look_up_on(engine: sa.Engine, claims: Any) -> Principal:
    """The caller, read on the primary's reading pool without a transaction, its connection
    given back at once."""
    with Session(engine) as session:
        return load_principal(session, claims.user_id, claims.family_id)


# what a route behind a login may answer (tecnorev.core.web.documented): no valid login, or
# a caller without the permission (or the reach) the action needs
AUTH_ERRORS = {401: {"not_authenticated", "invalid_token"}, 403: {"permission_denied"}}


def authenticate_early(authorization: str | None) -> None:
    """Check the login a route demands before its input: an anonymous caller (or one with a
    token that is not valid) learns 401, not what is wrong with the body it sent
    (``tecnorev.core.web.errors`` calls it when a request is not valid).  No database: the
    token's signature and expiry only; the rest is checked as the request runs."""
    scheme, token = get_authorization_scheme_param(authorization)
    if not authorization or scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("not authenticated: send 'Authorization: Bearer <access token>'")
    decode_access_token(token)


current_user.error_codes = AUTH_ERRORS  # type: ignore[attr-defined]
current_user.authenticate_early = authenticate_early  # type: ignore[attr-defined]

CurrentUser = Annotated[Principal, Depends(current_user)]


def _bearer_of(request: Request) -> str | None:
    """The bearer token of a public route's request, if any.  Read from the header itself,
    not through the OAuth2 scheme (a scheme would put a security requirement on the route in
    the OpenAPI document, and generated clients would then demand a token for it), nor as a
    declared header parameter, which FastAPI would validate on every anonymous request."""
    authorization = request.headers.get("authorization")
    scheme, token = get_authorization_scheme_param(authorization)
    return token if authorization and scheme.lower() == "bearer" else None


async def optional_user(request: Request) -> Principal | None:
    # An anonymous request (a public route's usual caller) costs no trip through the thread
    # pool.  A token that is sent but invalid or expired is still a 401, so a client learns
    # to refresh it rather than silently getting the anonymous view.
    token = _bearer_of(request)
    if not token:
        return None
    claims = decode_access_token(token)
    bind_user(claims.user_id)
    primary = primary_reader(request)
    cache = cache_of(primary)
    found = cache.get(claims.user_id, claims.family_id) if cache is not None else None
    if found is not None:
        return found
    # on the reading threads, as the public route's own reads: a few at a time on the
    # reading pool, whatever the number of requests
    return await run_read(_look_up_on, primary, claims, on=primary)


# a token sent but not valid; a public route may keep part of its answer to some callers
optional_user.error_codes = AUTH_ERRORS  # type: ignore[attr-defined]


OptionalUser = Annotated[Principal | None, Depends(optional_user)]
"""The caller of a public route, or ``None`` when anonymous; read on the primary, as every
caller is."""


def require_permission(permission: str) -> Any:
    """A dependency (``Annotated[Principal, require_permission(CODE)]``) that lets through
    only a caller whose roles grant ``permission``; the route table keeps the code, so the
    permission matrix can be read off the app."""
    # checked against the installed modules' declarations when the app is composed
    # (tecnorev.core.web.make_app): importing routes must not load every module

    # One dependency rather than one on top of ``current_user``: FastAPI's cost per request
    # grows with the dependency tree.
    async def check_permission(session: SessionDep, token: BearerToken) -> Principal:
        user = await current_user(session, token)
        if permission not in user.permissions:
            raise PermissionDenied(f"this requires the {permission!r} permission")
        return user

    check_permission.permission = permission  # type: ignore[attr-defined]
    check_permission.error_codes = AUTH_ERRORS  # type: ignore[attr-defined]
    check_permission.authenticate_early = authenticate_early  # type: ignore[attr-defined]
    return Depends(check_permission)


class Caller:
    """The caller of a route that only reads, looked up in the thread that reads its data.

    A ``CurrentUser`` costs a thread hand-off of its own before the route reads anything; a
    ``Caller`` is only the checked token (signature and expiry, on the event loop), and
    ``principal(session)``, called first in the route's ``run_read``, looks the login up and
    checks the permission there: one hand-off for the lookup and the page together.  On the
    primary always, so a login that ended is refused at once even when the page is read on a
    replica.  A route that forgets to call it answers 500 rather than its data.
    """

    def __init__(
        self, claims: AccessClaims | None, permission: str | None, primary: sa.Engine
    ) -> None:
        self._claims = claims
        self._permission = permission
        self._primary = primary
        self.checked = False

    def principal(self, session: Connectable) -> Principal | None:
        """Who calls (``None``: anonymous, where the route allows it); raises
        ``NotAuthenticated`` or ``PermissionDenied`` as ``require_permission`` does."""
        self.checked = True
        claims = self._claims
        if claims is None:
            return None
        if session.get_bind() is self._primary:
            # the route reads on the primary: the same connection
            user = load_principal(session, claims.user_id, claims.family_id)
        else:
            user = _look_up_on(self._primary, claims)
        if self._permission is not None and self._permission not in user.permissions:
            raise PermissionDenied(f"this requires the {self._permission!r} permission")
        return user

    def user(self, session: Connectable) -> Principal:
        """``principal`` for a route behind a login: never ``None``."""
        user = self.principal(session)
        assert user is not None  # the dependency refused an anonymous call
        return user


def read_as(permission: str | None = None) -> Any:
    """A dependency (``Annotated[Caller, read_as(CODE)]``) for a route that only reads, behind
    a login (with ``permission``, when given): see ``Caller``."""

    async def read_caller(request: Request, token: BearerToken) -> AsyncIterator[Caller]:
        caller = _reading_caller(request, token, permission)
        yield caller
        _looked_up(caller)

    def from_request(request: Request) -> tuple[Caller, Callable[[Any], None]]:
        # the same from the header itself, for routes that solve their dependencies
        # (tecnorev.core.web.routing): what the OAuth2 scheme would read
        caller = _reading_caller(request, _bearer_of(request), permission)
        return caller, _after(caller)

    read_caller.permission = permission  # type: ignore[attr-defined]
    read_caller.error_codes = AUTH_ERRORS  # type: ignore[attr-defined]
    read_caller.authenticate_early = authenticate_early  # type: ignore[attr-defined]
    read_caller.from_request = from_request  # type: ignore[attr-defined]
    return Depends(read_caller, scope="function")


def _reading_caller(request: Request, token: str | None, permission: str | None) -> Caller:
    if not token:
        raise NotAuthenticated("not authenticated: send 'Authorization: Bearer <access token>'")
    claims = decode_access_token(token)
    bind_user(claims.user_id)
    return Caller(claims, permission, primary_reader(request))


def _optional_reading_caller(request: Request) -> Caller:
    token = _bearer_of(request)
    claims = None
    if token:
        claims = decode_access_token(token)
        bind_user(claims.user_id)
    return Caller(claims, None, primary_reader(request))


def _looked_up(caller: Caller) -> None:
    if not caller.checked:
        raise RuntimeError("the route read its data without looking its caller up")


def _after(caller: Caller) -> Callable[[Any], None]:
    """What runs once the route returned: a caller never looked up is a bug (500), never
    data; after an error, nothing to check."""

    def check(error: BaseException | None) -> None:
        if error is None:
            _looked_up(caller)

    return check


async def _optional_caller(request: Request) -> AsyncIterator[Caller]:
    caller = _optional_reading_caller(request)
    yield caller
    _looked_up(caller)


def _optional_from_request(request: Request) -> tuple[Caller, Callable[[Any], None]]:
    caller = _optional_reading_caller(request)
    return caller, _after(caller)


_optional_caller.error_codes = AUTH_ERRORS  # type: ignore[attr-defined]
_optional_caller.from_request = _optional_from_request  # type: ignore[attr-defined]

OptionalCaller = Annotated[Caller, Depends(_optional_caller, scope="function")]
"""The caller of a public route that only reads, anonymous or not (see ``Caller``)."""


def required_permission(call: Any) -> str | None:
    """The permission a dependency callable demands (for reading it off the route table)."""
    return getattr(call, "permission", None)
