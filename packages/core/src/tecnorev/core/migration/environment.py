"""``run`` for ``alembic/env.py`` files written before the engine moved: it lives in
``tecnorev.migrate.environment`` (tecnorev-migrate)."""

from tecnorev.core.migration._moved import moved

run = moved("environment").run

__all__ = ["run"]
