"""Users, roles and permissions."""

from tecnorev.core import Module

module = Module(
    name="auth",
    package="tecnorev.auth",
    description="users, roles, permissions, tokens",
)
