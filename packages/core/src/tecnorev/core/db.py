"""Engines and sessions: one engine per process and database URL, a session per unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tecnorev.core.errors import DatabaseUnavailable
from tecnorev.core.settings import get_settings, normalize_database_url

if TYPE_CHECKING:
    from sqlmodel import Session

    from tecnorev.core.registry import Registry


def _sqlite_app_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite opens transactions on its own terms (not before a SAVEPOINT, say, so releasing
    # one committed for good); driver autocommit plus our own BEGIN makes SQLite's
    # transactions SQLAlchemy's, as its documentation recommends.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN")


CONNECT_TIMEOUT = 5  # seconds


def create_db_engine(url: str | None = None, **kwargs: Any) -> sa.Engine:
    """An engine for ``url`` (default: the configured ``DATABASE_URL``) with the project's
    per-backend settings; for SQLite, foreign keys are enforced on every connection."""
    url = normalize_database_url(url) if url else get_settings().database_url
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = sa.create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_app_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if "connect_timeout" not in make_url(url).query:
        # an unreachable host that drops packets would otherwise hang start-up and probes
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    return sa.create_engine(url, **kwargs)


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> sa.Engine:
    return create_db_engine(url)


def is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    """Whether ``exc`` is a unique violation (SQLSTATE 23505; SQLite's "UNIQUE constraint")."""
    pgcode = getattr(exc.orig, "pgcode", None)
    return pgcode == "23505" if pgcode else str(exc.orig).startswith("UNIQUE")


def describe_url(url: str | sa.URL) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def check_connection(engine: sa.Engine) -> None:
    """Open and close one connection, turning driver errors into a message a person can act on."""
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(
            f"cannot connect to the database at {describe_url(engine.url)}: {reason}. "
            "Check DATABASE_URL (environment or .env) and that the server is running."
        ) from exc


@contextmanager
def session_scope(
    engine: sa.Engine | None = None, *, registry: Registry | None = None
) -> Iterator[Session]:
    """A session committed once when the block succeeds and rolled back when it raises;
    the events it published are delivered after the commit (to ``registry``'s subscribers,
    by default the installed modules')."""
    from sqlmodel import Session  # imported here: migration commands use this module too

    from tecnorev.core.events import deliver, take_committed

    engine = engine or get_engine()
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        deliver(take_committed(session), engine=engine, registry=registry)
