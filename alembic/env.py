"""Alembic environment: the installed modules' branches, found through their entry points."""

from tecnorev.core.migration.environment import run

run()
