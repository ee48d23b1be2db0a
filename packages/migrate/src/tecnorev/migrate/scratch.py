"""Throwaway databases for comparing models against migrations."""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config

from tecnorev.migrate.connect import bounded_engine, check_connection
from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.project import normalize_url


@contextmanager
def scratch_database(like_url: str) -> Iterator[str]:
    """An empty database of the same kind as ``like_url``: on PostgreSQL a new database on the
    same server (dropped afterwards), otherwise a temporary SQLite file."""
    url = sa.make_url(normalize_url(like_url))
    if url.get_backend_name() != "postgresql":
        with tempfile.TemporaryDirectory(prefix="tecnorev-scratch-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'scratch.db'}"
        return
    name = f"tecnorev_scratch_{secrets.token_hex(6)}"
    admin = bounded_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    check_connection(admin)  # a server that does not answer is unavailable, not refusing
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.DBAPIError as exc:
        admin.dispose()
        raise MigrationError(
            f"cannot create a scratch database on {url.render_as_string(hide_password=True)}: "
            f"{str(exc.orig).strip()}. Pass --scratch-url with an empty database you may use."
        ) from exc
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def quiet_alembic(config: Config) -> Iterator[None]:
    """Silence alembic's INFO lines for work the user did not ask to watch."""
    logger = logging.getLogger("alembic")
    level = logger.level
    config.attributes["tecnorev_quiet"] = True
    try:
        yield
    finally:
        config.attributes.pop("tecnorev_quiet", None)
        logger.setLevel(level)
