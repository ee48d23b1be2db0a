"""The descriptor each domain package exports through the ``tecnorev.modules`` entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

ENTRY_POINT_GROUP = "tecnorev.modules"


@dataclass(frozen=True)
class Permission:
    """A permission code a module's routes demand (``<resource>:<action>``), what it allows,
    and the standard roles (auth's ``admin``, ``manager``, ``clerk``, ``customer``) its
    module grants it to when installed.  The grants themselves are data, written by a
    revision of the module's own branch; ``roles`` is what that revision grants."""

    code: str
    description: str
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Module:
    """What a domain package tells the platform about itself.

    ``name`` is also the package's Alembic branch label.  Everything is given as dotted
    paths so that reading the descriptor never imports models, routers or SQLAlchemy.
    """

    name: str
    package: str
    depends_on: tuple[str, ...] = ()
    models: str | None = None
    router: str | None = None
    migrations: str = "migrations"
    description: str = ""
    # (event name, "dotted.module:function"): reactions to events another module publishes,
    # run after the publishing transaction commits (see tecnorev.core.events).
    subscribers: tuple[tuple[str, str], ...] = ()
    # "dotted.module:function" adding this module's demo data (see tecnorev.core.demo).
    demo: str | None = None
    # the permission codes this module's routes demand; auth knows no others
    permissions: tuple[Permission, ...] = ()
    # (name, "dotted.module:typer_app"): command groups of the tecnorev command
    commands: tuple[tuple[str, str], ...] = ()
    # "dotted.module:Class": this module's settings, a tecnorev.core.settings.SettingsGroup
    settings: str | None = None
    distribution: str | None = field(default=None, compare=False)

    @property
    def models_module(self) -> str:
        return self.models or f"{self.package}.models"

    @property
    def router_path(self) -> str:
        return self.router or f"{self.package}.routes:router"

    def migrations_path(self) -> Path:
        """The folder holding this package's Alembic branch, inside the installed package."""
        return Path(str(resources.files(self.package).joinpath(self.migrations)))

    def owns_module(self, dotted: str) -> bool:
        return dotted == self.package or dotted.startswith(self.package + ".")
