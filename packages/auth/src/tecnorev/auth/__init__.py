"""Users, roles and permissions."""

from tecnorev.auth.permissions import PERMISSIONS
from tecnorev.core import Module

module = Module(
    name="auth",
    package="tecnorev.auth",
    demo="tecnorev.auth.demo:load",
    description="users, roles, permissions, tokens",
    permissions=PERMISSIONS,
    commands=(("users", "tecnorev.auth.cli:app"),),
    settings="tecnorev.auth.config:AuthSettings",
)
