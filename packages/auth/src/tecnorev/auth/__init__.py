"""Users, roles and permissions."""

from tecnorev.core import Module

module = Module(
    name="auth",
    package="tecnorev.auth",
    demo="tecnorev.auth.demo:load",
    description="users, roles, permissions, tokens",
)
