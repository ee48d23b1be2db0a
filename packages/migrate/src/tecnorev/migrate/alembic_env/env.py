"""Alembic environment used when no project ``alembic.ini`` is present (installed wheels)."""

from tecnorev.migrate.environment import run

run()
