"""Our own ``tecnorev db`` commands (names alembic does not use).

Each command is a module here exposing ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(config, options) -> int`` (the exit code).  Keep module tops light: every ``tecnorev db``
invocation imports them to build its parser; heavy imports belong inside ``run``.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

COMMANDS: tuple[str, ...] = (
    "forget",
    "generate",
    "adopt",
    "graph",
    "sql",
    "status",
    "log",
    "verify",
    "lint",
    "restore",
    "repair",
    "release",
    "squash",
    "contract",
    "backfill",
    "replicas",
)


def load(name: str) -> ModuleType:
    return import_module(f"{__name__}.{name}")
