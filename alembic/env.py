"""Alembic environment: the installed modules' branches, found through their entry points."""

from tecnorev.migrate.environment import run

run()
