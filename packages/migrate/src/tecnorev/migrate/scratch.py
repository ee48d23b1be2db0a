"""Throwaway databases for comparing models against migrations, and snapshots of what a
database holds for comparing two."""

from __future__ import annotations

import logging
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def snapshot(url: str, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A database's schema and rows, in a form two databases can be compared by: per table its
    columns, keys, indexes and constraints, and its rows (timestamps left out: they say when,
    not what).  Tables in ``skip`` are left out."""
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            found: dict[str, Any] = {}
            for table in sorted(set(inspector.get_table_names()) - skip):
                columns = inspector.get_columns(table)
                timeless = [
                    c["name"]
                    for c in columns
                    if not isinstance(c["type"], (sa.DateTime, sa.Date, sa.Time))
                ]
                selected = ", ".join(f'"{name}"' for name in timeless)
                rows = connection.exec_driver_sql(f'SELECT {selected} FROM "{table}"').fetchall()
                found[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                        for c in columns
                    ],
                    "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
                    "foreign keys": sorted(
                        (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
                        for fk in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (ix["name"], ix["column_names"], bool(ix["unique"]))
                        for ix in inspector.get_indexes(table)
                    ),
                    "unique": sorted(
                        (uq["name"] or "", uq["column_names"])
                        for uq in inspector.get_unique_constraints(table)
                    ),
                    "checks": sorted(
                        ck["sqltext"] for ck in inspector.get_check_constraints(table)
                    ),
                    "rows": sorted(repr(tuple(row)) for row in rows),
                }
            return found
    finally:
        engine.dispose()


def differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """What differs between two :func:`snapshot` results, one line each."""
    lines = [f"table {t} only in the first" for t in sorted(set(left) - set(right))]
    lines += [f"table {t} only in the second" for t in sorted(set(right) - set(left))]
    for table in sorted(set(left) & set(right)):
        for aspect, value in left[table].items():
            if right[table][aspect] != value:
                lines.append(f"table {table}: {aspect} differ")
    return lines
