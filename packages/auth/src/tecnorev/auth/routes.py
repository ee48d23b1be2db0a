"""The auth endpoints: logging in and out, tokens, one's own password, and user administration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from tecnorev.auth import listings, service
from tecnorev.auth.deps import Caller, CurrentUser, Principal, read_as, require_permission
from tecnorev.auth.errors import InvalidCredentials
from tecnorev.auth.metrics import LOGIN_FAILURES, LOGINS_THROTTLED
from tecnorev.auth.permissions import USERS_MANAGE, USERS_READ
from tecnorev.auth.schemas import (
    MePublic,
    PasswordChange,
    PermissionPublic,
    RefreshRequest,
    RolePublic,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserRolesUpdate,
    UserUpdate,
)
from tecnorev.auth.throttle import TooManyAttempts, throttle_of
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, Router, SessionDep
from tecnorev.core.web.types import IdPath

router = Router(prefix="/auth")

UsersReader = Annotated[Principal, require_permission(USERS_READ)]
UsersManager = Annotated[Principal, require_permission(USERS_MANAGE)]

_NOT_AUTHENTICATED: dict[int | str, dict[str, Any]] = {401: {"description": "not authenticated"}}


def _tokens(tokens: service.IssuedTokens, response: Response) -> TokenPublic:
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 §5.1: never cache tokens
    return TokenPublic(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
    )


def _user_public(account: service.UserAccount) -> UserPublic:
    user = account.user
    assert user.id is not None  # a stored user
    return UserPublic(
        id=user.id,
        email=user.email,
        full_name=user.full_name,
        is_active=user.is_active,
        roles=account.roles,
        created_at=user.created_at,
    )


@router.post(
    "/token",
    summary="log in with email (as username) and password",
    responses={
        401: {"description": "invalid_credentials"},
        429: {"description": "too_many_attempts: too many failures for the account or address"},
        503: {"description": "overloaded: too many logins at once"},
    },
)
def log_in(
    session: SessionDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    request: Request,
    response: Response,
) -> TokenPublic:
    """Opens a new login.  A wrong password, an unknown email and a deactivated user all get
    the same 401 ``invalid_credentials``.  After too many failures for one account or from
    one address, logins are refused with 429 ``too_many_attempts`` and ``Retry-After``."""
    throttle = throttle_of(request.app.state)
    address = request.client.host if request.client else "unknown"
    try:
        throttle.attempt(email=form.username, address=address)
    except TooManyAttempts:
        LOGINS_THROTTLED.inc()
        raise
    try:
        tokens = service.log_in(session, email=form.username, password=form.password)
    except InvalidCredentials:
        LOGIN_FAILURES.inc()
        throttle.failed(address=address)
        raise
    throttle.succeeded(email=form.username)
    return _tokens(tokens, response)


@router.post(
    "/refresh",
    summary="exchange a refresh token for new tokens",
    responses={401: {"description": "invalid_token, or token_reused"}},
)
def refresh(session: SessionDep, body: RefreshRequest, response: Response) -> TokenPublic:
    """Each refresh token works once.  Presenting one that was already exchanged is answered
    with ``token_reused`` and ends the whole login, since someone else may hold a copy."""
    return _tokens(service.refresh_login(session, refresh_token=body.refresh_token), response)


@router.post(
    "/logout",
    status_code=204,
    summary="end this login",
    responses=_NOT_AUTHENTICATED,
)
def log_out(session: SessionDep, user: CurrentUser) -> None:
    """The access token and every refresh token of this login stop working."""
    service.end_login(session, user_id=user.id, login_id=user.login_id)


@router.post(
    "/password",
    status_code=204,
    summary="change one's own password",
    responses={
        **_NOT_AUTHENTICATED,
        422: {"description": "wrong_password, weak_password or validation_error"},
    },
)
def change_password(session: SessionDep, user: CurrentUser, body: PasswordChange) -> None:
    """A wrong current password is a 422 ``wrong_password`` (the token itself is fine).  The
    new password needs 10 to 128 characters and must not be the email.  Every login of the
    user ends, this one included: log in again with the new password."""
    service.change_password(
        session,
        user_id=user.id,
        current_password=body.current_password,
        new_password=body.new_password,
    )


@router.get("/me", summary="the caller", responses=_NOT_AUTHENTICATED)
def me(session: SessionDep, user: CurrentUser) -> MePublic:
    account = service.get_user(session, user_id=user.id)
    return MePublic(
        id=user.id,
        email=account.user.email,
        full_name=account.user.full_name,
        roles=account.roles,
        permissions=sorted(user.permissions),
    )


@router.get("/users", response_model=listings.users.page_type, summary="a page of users")
async def list_users(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as(USERS_READ)],
    query: Annotated[ListingQuery, Depends(listings.users.query)],
) -> Response:
    def page() -> bytes:
        caller.user(reader)
        return listings.users.page_json(reader, query)

    return await read_page(page, on=reader)


@router.post("/users", status_code=201, summary="create a user")
def create_user(session: SessionDep, actor: UsersManager, body: UserCreate) -> UserPublic:
    """A duplicate email is a 409 ``email_taken``; an unknown role a 422 ``unknown_role``."""
    account = service.create_user(
        session,
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        roles=body.roles,
        created_by_id=actor.id,
    )
    return _user_public(account)


@router.get("/users/{user_id}", summary="one user")
def get_user(session: SessionDep, _reader: UsersReader, user_id: IdPath) -> UserPublic:
    return _user_public(service.get_user(session, user_id=user_id))


@router.patch("/users/{user_id}", summary="change a user's name or active flag")
def update_user(
    session: SessionDep, actor: UsersManager, user_id: IdPath, body: UserUpdate
) -> UserPublic:
    """Deactivating a user ends their logins; deactivating yourself is a 409
    ``self_lockout``."""
    account = service.update_user(
        session,
        user_id=user_id,
        actor_id=actor.id,
        full_name=body.full_name,
        is_active=body.is_active,
    )
    return _user_public(account)


@router.put("/users/{user_id}/roles", summary="set a user's complete set of roles")
def set_user_roles(
    session: SessionDep, actor: UsersManager, user_id: IdPath, body: UserRolesUpdate
) -> UserPublic:
    """Unknown role names are a 422 ``unknown_role``; taking away your own
    ``users:manage`` is a 409 ``self_lockout``."""
    account = service.set_user_roles(session, user_id=user_id, roles=body.roles, actor_id=actor.id)
    return _user_public(account)


@router.get("/permissions", summary="the permission codes of the installed modules")
def list_permissions(_reader: UsersReader) -> list[PermissionPublic]:
    """Every code a role can grant, from the modules installed, with the module declaring it."""
    from tecnorev.core.registry import get_registry

    return [
        PermissionPublic(
            code=code,
            module=module,
            description=permission.description,
            default_roles=list(permission.roles),
        )
        for code, (module, permission) in sorted(get_registry().permissions.items())
    ]


@router.get("/roles", summary="roles and the permissions they grant")
def list_roles(session: SessionDep, _reader: UsersReader) -> list[RolePublic]:
    return [_role_public(grants) for grants in service.list_roles(session)]


def _role_public(grants: service.RoleGrants) -> RolePublic:
    role = grants.role
    assert role.id is not None  # a stored role
    return RolePublic(
        id=role.id,
        name=role.name,
        description=role.description,
        permissions=grants.permissions,
    )
