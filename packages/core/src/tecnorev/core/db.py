"""Engines and sessions: one engine per process and database URL, a session per unit of work."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tecnorev.core.errors import DatabaseUnavailable
from tecnorev.core.settings import (
    CoreSettings,
    connect_timeout,
    get_settings,
    normalize_database_url,
)

log = logging.getLogger("tecnorev.db")

if TYPE_CHECKING:
    from sqlmodel import Session

    from tecnorev.core.registry import Registry


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    milliseconds = max(1, round(busy_timeout * 1000))

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite opens transactions on its own terms (not before a SAVEPOINT, say, so
        # releasing one committed for good); driver autocommit plus our own BEGIN makes
        # SQLite's transactions SQLAlchemy's, as its documentation recommends.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # a writer waits this long for the write lock, then fails (a logged 503 in the API)
        cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "delete":
            # WAL: readers never block the writer nor it them, and a commit costs one
            # append instead of a rollback journal.  Kept in the file, so asked once.
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    return pragmas


# One queue per database file in this process.  SQLite's busy handler polls with growing sleeps
# (up to 100 ms), so under many writers one can lose every race until its timeout; a lock the
# waiting threads block on hands the file over on each commit instead.
_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_GUARD = threading.Lock()
_HOLDS = "tecnorev_sqlite_writer"  # connection-record info key: this connection holds the queue


def _writer_queue(url: str) -> threading.Lock:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(make_url(url).database or url, threading.Lock())


def _sqlite_transactions(engine: sa.Engine, url: str, busy: float) -> None:
    """Every transaction starts with BEGIN IMMEDIATE, after this process's queue for the file.

    IMMEDIATE takes the write lock up front, where busy_timeout queues the transaction.  A
    deferred one that read first and writes later fails at once with "database is locked"
    when another writer committed meanwhile: no wait can help a stale snapshot."""
    queue = _writer_queue(url)

    def release(info: dict[str, Any]) -> None:
        if info.pop(_HOLDS, False):
            queue.release()

    def begin(connection: sa.Connection) -> None:
        # past the bound, go on without the queue: SQLite's own busy timeout then answers
        if queue.acquire(timeout=busy):
            connection.info[_HOLDS] = True
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            release(connection.info)
            raise

    event.listen(engine, "begin", begin)
    event.listen(engine, "commit", lambda connection: release(connection.info))
    event.listen(engine, "rollback", lambda connection: release(connection.info))
    # a connection returned (or invalidated) with its transaction never ended must not keep it
    event.listen(engine, "checkin", lambda _dbapi, record: release(record.info))


@dataclass(frozen=True)
class RequestTimeouts:
    """Bounds on what one API request may wait for inside the database: the row locks it
    takes, each statement, and the time its transaction may sit idle (a stuck process
    holding locks is cut off by the server).  Set on each connection of the API's engines
    when it opens, so they cost no round trip per request."""

    lock: float = 3.0
    statement: float = 15.0
    idle_in_transaction: float = 60.0

    @classmethod
    def from_env(cls) -> RequestTimeouts:
        settings = CoreSettings()
        return cls(
            lock=settings.request_lock_timeout,
            statement=settings.request_statement_timeout,
            idle_in_transaction=settings.idle_in_transaction_timeout,
        )

    def postgres_options(self) -> str:
        """libpq's ``options``: server settings sent with the connection's start-up packet."""
        settings = {
            "lock_timeout": self.lock,
            "statement_timeout": self.statement,
            "idle_in_transaction_session_timeout": self.idle_in_transaction,
        }
        return " ".join(f"-c {name}={max(1, round(s * 1000))}" for name, s in settings.items())


APPLICATION_NAME = "tecnorev"
_ROLE_TIMEOUTS = sa.text(
    "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
    "current_setting('idle_in_transaction_session_timeout')"
)


def check_pooled_timeouts(engine: sa.Engine) -> None:
    """Through a transaction pooler the request bounds are the role's: warn, with the
    commands, when the server would let a request wait forever."""
    if engine.dialect.name != "postgresql" or get_settings().db_pooler != "transaction":
        return
    with engine.connect() as connection:
        values = connection.execute(_ROLE_TIMEOUTS).one()
        role = connection.execute(sa.text("SELECT current_user")).scalar_one()
    wanted = RequestTimeouts.from_env()
    unset = [
        f"ALTER ROLE {role} SET {name} = '{max(1, round(seconds * 1000))}ms';"
        for name, seconds, value in zip(
            ("lock_timeout", "statement_timeout", "idle_in_transaction_session_timeout"),
            (wanted.lock, wanted.statement, wanted.idle_in_transaction),
            values,
            strict=True,
        )
        if value in ("0", "0ms")
    ]
    if unset:
        log.warning(
            "TECNOREV_DB_POOLER=transaction: the role %s has no %s, so a request may wait in "
            "the database without bound; %s",
            role,
            ", ".join(cmd.split(" SET ")[1].split(" =")[0] for cmd in unset),
            " ".join(unset),
        )


def create_db_engine(
    url: str | None = None, *, timeouts: RequestTimeouts | None = None, **kwargs: Any
) -> sa.Engine:
    """An engine for ``url`` (default: the configured ``DATABASE_URL``) with the project's
    per-backend settings: foreign keys enforced, WAL and write transactions that queue for
    the lock on SQLite; a connect timeout on PostgreSQL.  ``timeouts`` bounds lock waits and
    statements (the API's engines); without it, SQLite still waits at most 5 s for a lock."""
    url = normalize_database_url(url) if url else get_settings().database_url
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        autocommit = kwargs.get("isolation_level") == "AUTOCOMMIT"
        engine = sa.create_engine(url, **kwargs)
        busy = timeouts.lock if timeouts else SQLITE_BUSY_TIMEOUT
        event.listen(engine, "connect", _sqlite_pragmas(busy))
        if not autocommit:
            _sqlite_transactions(engine, url, busy)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = kwargs.setdefault("connect_args", {})
    if "application_name" not in make_url(url).query:
        connect_args.setdefault("application_name", APPLICATION_NAME)
    if timeouts is not None and get_settings().db_pooler == "transaction":
        # a transaction pooler refuses start-up options (or drops them): the role's settings
        # bound the requests instead, which start-up checks (check_pooled_timeouts)
        timeouts = None
    if timeouts is not None:
        # connect_args replace the URL's own options (and libpq's PGOPTIONS): keep them first
        found = make_url(url).query.get("options", ())
        given = [found] if isinstance(found, str) else list(found)
        options = [
            os.environ.get("PGOPTIONS", ""),
            *given,
            connect_args.get("options", ""),
            timeouts.postgres_options(),
        ]
        connect_args["options"] = " ".join(o.strip() for o in options if o.strip())
    return bounded_engine(url, **kwargs)


def bounded_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """``sa.create_engine`` whose connections give up opening after ``connect_timeout()`` on
    PostgreSQL (a ``connect_timeout`` in the URL's query wins).  libpq otherwise waits forever
    for a host that accepts TCP and never answers, so every engine the product opens is made
    here, through ``create_db_engine`` or directly (migrations, status, scratch databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", connect_timeout())
    return sa.create_engine(url, **kwargs)


def connect_bound(url: str | sa.URL) -> str:
    """What bounds the wait for a connection to ``url``, as the operator would change it."""
    given = make_url(url).query.get("connect_timeout")
    if given is not None:
        return f"connect_timeout={given} in DATABASE_URL"
    return f"TECNOREV_DB_CONNECT_TIMEOUT={connect_timeout()}"


# libpq starts each failure with the host and port, which the URL in our message already names
_LIBPQ_WHERE = re.compile(r"^connection to server (?:at|on socket) .*? failed: ")


def unreachable(url: str | sa.URL, failure: BaseException | str) -> DatabaseUnavailable:
    """The error for a connection to ``url`` that could not be opened, in one line: the
    driver's reason (``failure``: its exception, or the reason a client tool gave), what to
    check and, on PostgreSQL, what bounded the wait."""
    if isinstance(failure, sa.exc.DBAPIError) and failure.orig is not None:
        failure = failure.orig
    lines = str(failure).strip().splitlines()
    reason = _LIBPQ_WHERE.sub("", lines[0].strip()) if lines else type(failure).__name__
    failed = f"cannot connect to the database at {describe_url(url)}: {reason}"
    if make_url(url).get_backend_name() != "postgresql":
        return DatabaseUnavailable(f"{failed}. Check DATABASE_URL (environment or .env).")
    return DatabaseUnavailable(
        f"{failed}. Check DATABASE_URL (environment or .env) and that the server answers; "
        f"{connect_bound(url)} bounds the wait."
    )


SQLITE_BUSY_TIMEOUT = 5.0


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> sa.Engine:
    return create_db_engine(url)


def table_of(model: type[Any]) -> sa.Table:
    """A table class's Table: ``Model.__table__``, which SQLModel does not declare to a type
    checker."""
    return cast(sa.Table, sa.inspect(model).local_table)


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
        raise unreachable(engine.url, exc) from exc


@contextmanager
def session_scope(
    engine: sa.Engine | None = None, *, registry: Registry | None = None
) -> Iterator[Session]:
    """A session committed once when the block succeeds and rolled back when it raises;
    the events it published are delivered after the commit (to ``registry``'s subscribers,
    by default the installed modules')."""
    from sqlmodel import Session  # imported here: migration commands use this module too

    from tecnorev.core.events import REGISTRY, deliver, take_committed

    engine = engine or get_engine()
    with Session(engine) as session:
        if registry is not None:
            session.info[REGISTRY] = registry
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        deliver(take_committed(session), engine=engine, registry=registry)


class Checkouts:
    """The connections ``engine``'s pool has handed out and not yet got back, so a stopping
    server can cancel what they wait for: a statement waiting on a lock holds its thread,
    and the process cannot end before that thread does."""

    def __init__(self, engine: sa.Engine) -> None:
        # keyed by pool record: a connection invalidated meanwhile comes back as None
        self._out: dict[int, Any] = {}
        self._lock = threading.Lock()
        event.listen(engine, "checkout", self._checked_out)
        event.listen(engine, "checkin", self._checked_in)

    def _checked_out(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        with self._lock:
            self._out[id(record)] = dbapi_connection

    def _checked_in(self, _dbapi_connection: Any, record: Any) -> None:
        with self._lock:
            self._out.pop(id(record), None)

    def __len__(self) -> int:
        return len(self._out)

    def cancel(self, timeout: float = 5.0) -> int:
        """Cancel the statement each checked-out connection runs (its transaction then
        rolls back, and the request answers with an error); the number cancelled.  Each
        cancel opens a connection of its own to the server, so they run on daemon threads
        waited for at most ``timeout`` seconds: a server that stopped answering cannot
        hold up a stopping process."""
        with self._lock:
            connections = list(self._out.values())
        senders = [
            threading.Thread(target=_cancel, args=(c,), daemon=True, name="tecnorev-cancel")
            for c in connections
        ]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + timeout
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))
        return len(connections)

    def wait_returned(self, timeout: float) -> bool:
        """Whether every connection came back within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._out and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._out


def _cancel(dbapi_connection: Any) -> None:
    with contextlib.suppress(Exception):  # already closed, or nothing running
        if hasattr(dbapi_connection, "cancel"):
            dbapi_connection.cancel()  # psycopg2: a cancel request on a new socket
        else:
            dbapi_connection.interrupt()  # sqlite3
