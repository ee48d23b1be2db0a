"""Alembic environment used when no project ``alembic.ini`` is present (installed wheels)."""

from tecnorev.core.migration.environment import run

run()
