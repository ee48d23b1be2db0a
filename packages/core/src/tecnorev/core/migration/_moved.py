"""Import a name that moved to ``tecnorev.migrate``, with the fix when it is not installed."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType


def moved(module: str) -> ModuleType:
    try:
        return import_module(f"tecnorev.migrate.{module}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tecnorev.migrate", f"tecnorev.migrate.{module}"):
            raise
        raise ModuleNotFoundError(
            f"tecnorev.core.migration.{module} moved to tecnorev.migrate.{module}, in the "
            "tecnorev-migrate distribution: pip install tecnorev-migrate",
            name=exc.name,
        ) from exc
