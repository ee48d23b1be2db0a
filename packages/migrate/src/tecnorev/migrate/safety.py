"""Applying migrations to a live PostgreSQL database without hurting it.

Three mechanisms, used by the migration environment for every run:

* **One migrator at a time.** A session-level advisory lock taken on a connection of its own and
  held for the whole run: a second migrator waits (and says for whom), then finds nothing to do.
  The migrating connection stays free to commit, roll back and retry.
* **No transaction pooling.** Behind a pooler in transaction mode (pgbouncer
  ``pool_mode=transaction``) a session-level lock belongs to whichever client the server
  session serves next, so it serialises nothing.  Before locking we probe for it (see
  :func:`check_session_pinning`) and refuse with the fix.
* **DDL never queues behind a long transaction.** Every revision's transaction sets
  ``SET LOCAL lock_timeout``: a DDL statement waiting for a lock also makes every later query on
  that table wait behind it, so it gives up quickly, is rolled back, and is retried with backoff;
  in the end it fails naming the session that held the lock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event

from tecnorev.migrate.errors import ConfigError, MigrationError
from tecnorev.migrate.exitcodes import ExitCode
from tecnorev.migrate.project import project, setting

LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE raised when lock_timeout expires
DEFAULT_LOCK_TIMEOUT_MS = 3000
DEFAULT_LOCK_RETRIES = 4
MAX_RETRY_DELAY_S = 30.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min)?\s*$")
_UNIT_MS = {"ms": 1, None: 1, "s": 1000, "min": 60_000}  # PostgreSQL's unit for bare numbers: ms


class TransactionPoolingError(MigrationError):
    """The connection goes through a pooler that hands out server sessions per transaction."""

    exit_code = ExitCode.UNAVAILABLE  # DATABASE_URL names a database migrations cannot use


# --------------------------------------------------------------------------- lock_timeout


@dataclass(frozen=True)
class LockTimeout:
    """How long one DDL statement may wait for a lock, and how often a revision is retried."""

    milliseconds: int
    retries: int

    @classmethod
    def from_env(cls) -> LockTimeout:
        return cls(milliseconds=lock_timeout_ms(), retries=lock_retries())

    @property
    def enabled(self) -> bool:
        return self.milliseconds > 0

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2, 3, ...): the timeout, doubling each time.

        Scaled on the timeout because it measures how much stalling the operator accepts; a
        short transaction in the way is gone by the first retry, a long one gets room to end."""
        return min(self.milliseconds / 1000 * 2 ** (attempt - 2), MAX_RETRY_DELAY_S)

    def describe(self) -> str:
        ms = self.milliseconds
        return f"{ms / 1000:g}s" if ms % 100 == 0 else f"{ms}ms"


def lock_timeout_ms() -> int:
    raw = setting("LOCK_TIMEOUT")
    return DEFAULT_LOCK_TIMEOUT_MS if not raw else _parse_duration(raw)


def lock_retries() -> int:
    raw = setting("LOCK_RETRIES")
    if raw and not raw.isdigit():
        raise MigrationError(
            f"{project().setting_name('LOCK_RETRIES')}={raw!r} is not a whole number of retries"
        )
    return int(raw) if raw else DEFAULT_LOCK_RETRIES


def _parse_duration(raw: str) -> int:
    match = _DURATION.match(raw.lower())
    if raw.lower() in ("off", "none"):
        return 0
    if not match:
        raise ConfigError(
            f"{project().setting_name('LOCK_TIMEOUT')}={raw!r} is not a duration: use e.g. 3s, "
            "500ms, or 0 to let DDL wait for locks as long as it takes"
        )
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


@contextmanager
def lock_timeout_per_transaction(connection: sa.Connection, policy: LockTimeout) -> Iterator[None]:
    """Every transaction begun on ``connection`` starts with ``SET LOCAL lock_timeout``.

    LOCAL, so the setting ends with the transaction whatever happens to it (and leaks into no
    pooled session); on the "begin" event, so it covers each revision's transaction however
    alembic opens it."""
    if not policy.enabled:
        yield
        return
    statement = f"SET LOCAL lock_timeout = '{policy.milliseconds}ms'"

    def _set_lock_timeout(conn: sa.Connection) -> None:
        conn.exec_driver_sql(statement)

    event.listen(connection, "begin", _set_lock_timeout)
    try:
        yield
    finally:
        event.remove(connection, "begin", _set_lock_timeout)


def is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and (
        getattr(exc.orig, "pgcode", None) == LOCK_NOT_AVAILABLE
    )


# --------------------------------------------------------------------------- who blocks us


@dataclass(frozen=True)
class Blocker:
    """A session holding a lock the migrator waited for, as pg_stat_activity showed it."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    transaction_seconds: float | None
    query: str | None
    relations: str | None

    def describe(self) -> str:
        parts = [f"user {self.user}"] if self.user else []
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.state:
            age = self.transaction_seconds
            parts.append(f"{self.state} for {age:.0f}s" if age is not None else self.state)
        if self.relations:
            parts.append(f"holding {self.relations}")
        query = " ".join((self.query or "").split())
        if len(query) > 160:
            query = query[:157] + "..."
        last = f"; last query: {query}" if query else ""
        return f"pid {self.pid} ({', '.join(parts)}{last})"


_BLOCKERS_OF_WAITING_PID = sa.text(
    """
    SELECT b.pid, b.usename, b.application_name, b.state,
           EXTRACT(EPOCH FROM now() - b.xact_start)::float8 AS xact_seconds, b.query,
           (SELECT string_agg(DISTINCT l.relation::regclass::text, ', ')
              FROM pg_locks l
             WHERE l.pid = b.pid AND l.granted AND l.relation IN (
                   SELECT w.relation FROM pg_locks w WHERE w.pid = :pid AND NOT w.granted)
           ) AS relations
      FROM unnest(pg_blocking_pids(:pid)) AS blocker(pid)
      JOIN pg_stat_activity b ON b.pid = blocker.pid
     WHERE (SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid) = 'Lock'
     ORDER BY b.xact_start
    """
)

# After the fact, the wait is over and pg_blocking_pids() knows nothing: name the transactions
# that have been open longer than the timeout and hold relation locks, the usual culprits.
_LIKELY_BLOCKERS = sa.text(
    """
    SELECT b.pid, b.usename, b.application_name, b.state,
           EXTRACT(EPOCH FROM now() - b.xact_start)::float8 AS xact_seconds, b.query,
           (SELECT string_agg(DISTINCT l.relation::regclass::text, ', ')
              FROM pg_locks l
              JOIN pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p')
             WHERE l.pid = b.pid AND l.granted AND l.database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
           ) AS relations
      FROM pg_stat_activity b
     WHERE b.datname = current_database() AND b.pid <> pg_backend_pid() AND b.pid <> :pid
       AND b.xact_start < now() - make_interval(secs => :seconds)
     ORDER BY b.xact_start
     LIMIT 3
    """
)


def _blockers(rows: sa.CursorResult) -> list[Blocker]:
    return [Blocker(*row) for row in rows]


class BlockerWatch:
    """Remembers who blocked the migrating backend the last time it waited for a lock.

    The moment lock_timeout fires the wait is over and PostgreSQL no longer says who was in the
    way, so a thread polls ``pg_blocking_pids`` on the lock connection (idle otherwise) while the
    migration runs.  It costs one cheap query per interval and only looks further when the
    migrator is actually waiting."""

    def __init__(
        self, connection: sa.Connection | None, migrator_pid: int, interval: float
    ) -> None:
        self._connection = connection
        self._pid = migrator_pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seen: list[Blocker] = []

    def __enter__(self) -> BlockerWatch:
        if self._connection is not None:
            self._thread = threading.Thread(target=self._poll, name="blocker-watch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def forget(self) -> None:
        self.seen = []

    def _poll(self) -> None:
        assert self._connection is not None
        while not self._stop.wait(self._interval):
            try:
                rows = self._connection.execute(_BLOCKERS_OF_WAITING_PID, {"pid": self._pid})
                found = _blockers(rows)
                self._connection.rollback()
            except sa.exc.DBAPIError:
                return  # diagnostics only: never let them break the migration
            # A poll that races the end of the wait can still name the blocker but no longer
            # the relation waited for: it never replaces a fuller view of the same wait.
            if found and (any(b.relations for b in found) or not self.seen):
                self.seen = found

    def blockers(self, connection: sa.Connection, policy: LockTimeout) -> list[Blocker]:
        """Who was in the way: what the watch saw, else the likely culprits now."""
        if self.seen:
            return self.seen
        try:
            rows = connection.execute(
                _LIKELY_BLOCKERS, {"pid": self._pid, "seconds": policy.milliseconds / 1000}
            )
            found = _blockers(rows)
            connection.rollback()
        except sa.exc.DBAPIError:
            return []
        return found


def describe_blockers(blockers: list[Blocker]) -> str:
    if not blockers:
        return "the session holding the lock had ended before it could be named"
    return "; ".join(b.describe() for b in blockers)


# --------------------------------------------------------------------------- the migrator lock


@dataclass(frozen=True)
class HeldLock:
    """The migration lock, held by a session-level advisory lock on ``connection``."""

    connection: sa.Connection
    pid: int  # the server session holding it
    migrator_pid: int  # the server session of the migrating connection


def backend_pid(connection: sa.Connection) -> int:
    """The server session behind ``connection`` for one transaction (committed at once)."""
    pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    connection.commit()
    return pid


def check_session_pinning(first: int, other: int, again: int) -> None:
    """Refuse when the server sessions seen on our two connections show a transaction pooler.

    ``first`` and ``again`` are the server pids of the lock connection in two transactions,
    ``other`` that of the migrating connection in a transaction between them.  Either finding is
    conclusive, because PostgreSQL gives every live client connection its own backend for its
    whole life:

    * ``other == first``: two open client connections were served by one server session;
    * ``again != first``: one client connection moved to another server session.

    A transaction-mode pooler that is otherwise idle shows the first (pgbouncer reuses the most
    recently released server connection); under load it usually shows the second.  Seeing
    neither is not proof there is no pooler (a pooler with spare idle servers in round-robin mode
    could hand out distinct, stable sessions for these three transactions by chance): it is the
    best a client can tell without access to the pooler's admin console."""
    if other == first:
        finding = (
            f"two of this migrator's connections were served by the same server session (pid "
            f"{first})"
        )
    elif again != first:
        finding = (
            f"one connection moved from server session {first} to {again} between two transactions"
        )
    else:
        return
    from tecnorev.migrate.project import migration_url_source, project

    source = migration_url_source()
    direct = project().setting_name("MIGRATION_URL")
    raise TransactionPoolingError(
        f"{source} goes through a connection pooler in transaction mode (such as pgbouncer "
        f"with pool_mode=transaction): {finding}. Migrations need a session of their own: the "
        "lock that keeps two migrators apart is a session-level advisory lock, which means "
        "nothing when sessions are shared. Nothing was changed. Set "
        f"{direct} to the PostgreSQL server directly (or a pooler port in session mode): "
        "migrations use it, while the application keeps DATABASE_URL's transaction pool."
    )


def _holder(connection: sa.Connection, key: int) -> str:
    row = connection.execute(
        sa.text(
            "SELECT a.pid, a.application_name, a.client_addr, a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :hi AND l.objid = :lo "
            "AND l.objsubid = 1 AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"
        ),
        {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return "another migrator"
    pid, application, address, started = row
    where = f" from {address}" if address else ""
    app = f" ({application})" if application else ""
    return f"another migrator: pid {pid}{app}{where}, connected since {started:%H:%M:%S}"


Report = Callable[[str], None]  # how an operator is told (the environment prints)


def _acquire(connection: sa.Connection, key: int, report: Report) -> int:
    """Take the session-level advisory lock; return the server pid that holds it."""
    # LOCAL: a role-level lock_timeout or statement_timeout must not cut the wait for another
    # migrator short (we wait as long as it runs), and nothing is left set on the session.
    connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
    connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
    got, pid = connection.execute(
        sa.text("SELECT pg_try_advisory_lock(:k), pg_backend_pid()"), {"k": key}
    ).one()
    if not got:
        report(f"waiting for the migration lock, held by {_holder(connection, key)}")
        # Poll instead of blocking in pg_advisory_lock: a statement waiting there holds a
        # snapshot, and CREATE INDEX CONCURRENTLY in the holder waits for every snapshot, a
        # deadlock PostgreSQL does not detect.  Between polls this session is idle.
        delay = 0.05
        while not got:
            connection.commit()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            got = connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}
            ).scalar()
        report("got the migration lock")
    connection.commit()
    return pid


def _release(connection: sa.Connection, key: int, report: Report) -> None:
    try:
        if connection.in_transaction():
            connection.rollback()
        held = connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key}).scalar()
        connection.commit()
    except sa.exc.DBAPIError:
        return  # the connection is gone, and its session-level lock with it
    if not held:
        report(
            "warning: the migration lock was no longer held by this migrator's session at the "
            "end of the run (was the server session ended from outside?)"
        )


def _same_dbapi_connection(one: sa.Connection, other: sa.Connection) -> bool:
    return one.connection.dbapi_connection is other.connection.dbapi_connection


@contextmanager
def session_lock(migrating: sa.Connection, key: int, report: Report) -> Iterator[HeldLock | None]:
    """Hold the advisory lock ``key`` on a dedicated connection while the body runs.

    ``migrating`` must not be inside a transaction: it is probed (one committed SELECT)."""
    dedicated = migrating.engine.connect()
    try:
        if _same_dbapi_connection(dedicated, migrating):
            # A single-connection pool (a caller's StaticPool): there is no second session to
            # lock on, so the migrating connection holds the lock itself.
            dedicated.close()
            dedicated = migrating
        first = backend_pid(dedicated)
        migrator_pid = backend_pid(migrating)
        if dedicated is not migrating:
            check_session_pinning(first, migrator_pid, backend_pid(dedicated))
        holder = _acquire(dedicated, key, report)
        try:
            yield HeldLock(dedicated, holder, migrator_pid) if dedicated is not migrating else None
        finally:
            _release(dedicated, key, report)
    finally:
        if dedicated is not migrating:
            dedicated.close()
