"""Tables of the auth module."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tecnorev.core.mixins import AuditMixin
from tecnorev.core.types import UTCDateTime, utcnow


class User(AuditMixin, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    full_name: str = Field(default="", max_length=200)
    hashed_password: str = Field(max_length=255)
    is_active: bool = Field(default=True)


class Role(AuditMixin, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=50, unique=True)
    description: str = Field(default="", max_length=255)


class Permission(SQLModel, table=True):
    """A permission code of an installed module, registered by that module's branch: the
    codes an administrator can grant, with what each allows."""

    code: str = Field(max_length=100, primary_key=True)
    module: str = Field(max_length=64, index=True)
    description: str = Field(max_length=200)


class RolePermission(SQLModel, table=True):
    """A permission code (defined in code) granted to a role."""

    __tablename__ = "role_permission"

    role_id: int = Field(foreign_key="role.id", ondelete="CASCADE", primary_key=True)
    permission: str = Field(max_length=100, primary_key=True)


class UserRole(SQLModel, table=True):
    __tablename__ = "user_role"

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    role_id: int = Field(foreign_key="role.id", ondelete="CASCADE", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class RefreshToken(SQLModel, table=True):
    """A refresh token, stored as a hash; tokens of one login share a family so reuse of a
    rotated token can revoke them all."""

    __tablename__ = "refresh_token"
    __table_args__ = (sa.Index("ix_refresh_token_family", "family_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    family_id: str = Field(max_length=32)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
