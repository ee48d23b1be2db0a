"""tecnorev-migrate: one Alembic branch per installed package, planned, applied, checked and
recorded together.

The public face (everything else is internal and may change):

- :class:`Module`, :class:`Registry`, :func:`discover`: the modules of the project's entry-point
  group, in dependency order;
- :class:`Project`, :func:`project`: what the engine knows of the project using it (entry-point
  group, settings prefix, command name), from ``alembic.ini``'s ``[tecnorev.migrate]`` section;
- :func:`make_config`: an Alembic ``Config`` whose version locations are the modules' branches,
  for ``alembic.command.*``;
- :func:`main`: the command line (``tecnorev db`` / ``tecnorev-migrate``), returning its exit code;
- :class:`ReadinessCheck`: whether a database has every installed revision, for a service's
  readiness probe;
- :func:`create_index_concurrently`: for revisions;
- the errors: :class:`MigrateError` and its kinds.

Names are resolved lazily: importing the package costs nothing until one is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tecnorev.migrate.cli import main, make_config
    from tecnorev.migrate.errors import (
        ConfigError,
        DatabaseUnavailable,
        DiscoveryError,
        MigrateError,
        MigrationError,
    )
    from tecnorev.migrate.helpers import create_index_concurrently
    from tecnorev.migrate.modules import Module, Registry, discover, get_registry
    from tecnorev.migrate.project import Project, project
    from tecnorev.migrate.readiness import ReadinessCheck

_LAZY = {
    "main": "tecnorev.migrate.cli",
    "make_config": "tecnorev.migrate.cli",
    "ConfigError": "tecnorev.migrate.errors",
    "DatabaseUnavailable": "tecnorev.migrate.errors",
    "DiscoveryError": "tecnorev.migrate.errors",
    "MigrateError": "tecnorev.migrate.errors",
    "MigrationError": "tecnorev.migrate.errors",
    "create_index_concurrently": "tecnorev.migrate.helpers",
    "Module": "tecnorev.migrate.modules",
    "Registry": "tecnorev.migrate.modules",
    "discover": "tecnorev.migrate.modules",
    "get_registry": "tecnorev.migrate.modules",
    "Project": "tecnorev.migrate.project",
    "project": "tecnorev.migrate.project",
    "ReadinessCheck": "tecnorev.migrate.readiness",
}

__all__ = [
    "ConfigError",
    "DatabaseUnavailable",
    "DiscoveryError",
    "MigrateError",
    "MigrationError",
    "Module",
    "Project",
    "ReadinessCheck",
    "Registry",
    "create_index_concurrently",
    "discover",
    "get_registry",
    "main",
    "make_config",
    "project",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tecnorev.migrate' has no attribute {name!r}")
