"""Opening the configured database the way migrations do, for our own commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic.config import Config

from tecnorev.migrate.connect import check_connection
from tecnorev.migrate.environment import database_url, migration_engine, migration_lock


@contextmanager
def migration_connection(config: Config, *, lock: bool = False) -> Iterator[sa.Connection]:
    """A connection to the configured database; with ``lock``, holding the migration lock."""
    engine = migration_engine(database_url(config))
    try:
        check_connection(engine)
        with engine.connect() as connection:
            if lock:
                with migration_lock(connection, external=False):
                    yield connection
            else:
                yield connection
    finally:
        engine.dispose()
