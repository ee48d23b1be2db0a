"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from tecnorev.core.web.types import Email, Patch, StrictBool, Text

# Passwords are never stripped; the policy (10 to 128 characters) is checked by the service,
# which the command line shares.  This bound only keeps absurd input out.
PasswordInput = Annotated[str, Text(1024, min_length=1, strip=False)]
RoleName = Annotated[str, Text(50, min_length=1)]
FullName = Annotated[str, Text(200)]
RefreshTokenInput = Annotated[str, Text(200, min_length=1)]


class _Request(BaseModel):
    # a misspelt field is refused rather than silently ignored
    model_config = ConfigDict(extra="forbid")


class TokenPublic(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str


class RefreshRequest(_Request):
    refresh_token: RefreshTokenInput


class PasswordChange(_Request):
    current_password: PasswordInput
    new_password: PasswordInput


class MePublic(BaseModel):
    id: int
    email: str
    full_name: str
    roles: list[str]
    permissions: list[str]


class UserPublic(BaseModel):
    id: int
    email: str
    full_name: str
    is_active: bool
    roles: list[str]
    created_at: datetime


class UserSummary(TypedDict):
    id: int
    email: str
    full_name: str
    is_active: bool
    created_at: datetime
    roles: list[str]


class UserCreate(_Request):
    email: Email
    full_name: FullName = ""
    password: PasswordInput
    roles: Annotated[list[RoleName], Field(max_length=20)] = []


class UserUpdate(Patch):
    """Only the fields sent are changed."""

    full_name: FullName | None = None
    is_active: StrictBool | None = None


class UserRolesUpdate(_Request):
    roles: Annotated[list[RoleName], Field(max_length=20)]


class PermissionPublic(BaseModel):
    code: str
    module: str
    description: str
    # the standard roles the module grants it to when installed
    default_roles: list[str]


class RolePublic(BaseModel):
    id: int
    name: str
    description: str
    permissions: list[str]
