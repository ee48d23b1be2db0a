"""Callers a worker looked up lately, reused until PostgreSQL says their login changed.

Every request behind a login names its caller, and looking it up (``deps.load_principal``)
is one statement: a quarter of what an authenticated page of 50 rows costs the server and
the database.  A worker keeps what it looked up, by user and login, and forgets it when told:

* auth's tables notify every change that matters to a caller on the ``tecnorev_auth``
  channel, from triggers, so the change is announced when (and only if) its transaction
  commits, whoever makes it (the API, the command line, SQL typed by hand): a user
  deactivated, renamed or deleted, its roles changed, one of its logins revoked (the user's
  id), a role's permissions changed (``*``: everyone);
* a thread per worker listens on a connection of its own and forgets the callers named;
* an entry older than ``TECNOREV_CALLER_CACHE_SECONDS`` is read again, which bounds how long
  a change could go unseen if its notification were lost with the listener's connection.

A change made through auth's services (``service``) is also forgotten by every cache of the
process that made it as its transaction commits, without waiting for the notification: a
request the same worker serves next already sees it.

Nothing is reused unless the listener is listening: before it starts, from the moment its
connection fails until it listens again (what it kept is dropped then, since notifications
may have been missed), on SQLite, and behind a transaction pooler, which does not pass
notifications on.  Every request then looks its caller up, as without this cache.  A lookup
that overlapped a notification is used but not kept (``generation``): it may have read the
row before the change the notification announced.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event, orm

from tecnorev.core.errors import first_line
from tecnorev.core.metrics import Counter, Gauge

if TYPE_CHECKING:
    from tecnorev.auth.deps import Principal

log = logging.getLogger("tecnorev.auth")

CHANNEL = "tecnorev_auth"
EVERYONE = "*"
MAX_USERS = 10_000  # users kept per worker; the one read longest ago is dropped first
# the listener's connection is probed after 5 idle seconds, then every 2 s, and given up
# after 3 probes unanswered: a dead link is noticed in about 11 s
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}

LOOKUPS = Counter(
    "tecnorev_caller_lookups_total",
    "Callers of requests behind a login: reused from the worker's cache or read",
    ["source"],
)
LISTENING = Gauge(
    "tecnorev_caller_cache_listening",
    "Workers whose caller cache listens for changes to logins (the others read every caller)",
    multiprocess_mode="livesum",
)
_REUSED = LOOKUPS.labels("cache")
_READ = LOOKUPS.labels("database")


class CallerCache:
    """The callers one worker looked up on one database, and the thread that listens for
    changes to them."""

    def __init__(self, engine: sa.Engine, max_age: float) -> None:
        self.engine = engine  # the listener's own (a pool of one)
        self.max_age = max_age
        # user id -> login (family id) -> (when read, the caller)
        self._users: dict[int, dict[str, tuple[float, Principal]]] = {}
        self._lock = threading.Lock()
        # bumped by every notification and every (re)start of listening
        self.generation = 0
        self.listening = False
        self.heard = threading.Condition(self._lock)  # notified with each generation
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listened = False  # since the last failure

    # --- requests ---------------------------------------------------------------------

    def get(self, user_id: int, login_id: str) -> Principal | None:
        """The caller as kept, if it may still be used."""
        if not self.listening:
            return None
        found = self._users.get(user_id, {}).get(login_id)
        if found is None or time.monotonic() - found[0] > self.max_age:
            return None
        _REUSED.inc()
        return found[1]

    def keep(self, principal: Principal, generation: int) -> None:
        """Keep ``principal``, read while the cache stood at ``generation``, unless something
        changed since."""
        _READ.inc()
        with self._lock:
            if not self.listening or generation != self.generation:
                return
            logins = self._users.pop(principal.id, None)
            if logins is None:
                logins = {}
                if len(self._users) >= MAX_USERS:
                    del self._users[next(iter(self._users))]
            logins[principal.login_id] = (time.monotonic(), principal)
            self._users[principal.id] = logins  # now the most recently used

    def forget(self, payloads: Iterable[str]) -> None:
        """Drop the callers a notification names (a user id each, or ``*``)."""
        with self._lock:
            self._changed()
            for payload in payloads:
                if payload == EVERYONE:
                    self._users.clear()
                    return
                try:
                    self._users.pop(int(payload), None)
                except ValueError:
                    log.warning("caller cache: a notification of %r: everyone forgotten", payload)
                    self._users.clear()
                    return

    def _changed(self) -> None:
        self.generation += 1
        self.heard.notify_all()

    def _deaf(self) -> None:
        LISTENING.set(0)
        with self._lock:
            self.listening = False
            self._users.clear()
            self._changed()

    # --- the listener -----------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tecnorev-callers", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("caller cache: the listener did not stop within %.0fs", timeout)
        self._deaf()
        self.engine.dispose()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                return
            except Exception as exc:  # the database went away: look callers up meanwhile
                # a failure after listening starts the backoff over
                failures = 1 if self._listened else failures + 1
                self._listened = False
                self._deaf()
                wait = min(30.0, 0.5 * 2**failures)
                log.warning(
                    "caller cache: not listening (%s); every caller is read until it listens "
                    "again (in %.0fs)",
                    first_line(exc),
                    wait,
                )
                self._stop.wait(wait)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        try:
            connection: Any = raw.driver_connection
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {CHANNEL}")
            with self._lock:
                # what was kept before may have missed a notification
                self._users.clear()
                self.listening = True
                self._changed()
            self._listened = True
            LISTENING.set(1)
            log.info("caller cache: listening for changes to logins")
            while not self._stop.is_set():
                readable, _, _ = select.select([connection], [], [], 1.0)
                if readable:
                    connection.poll()
                    if connection.notifies:
                        payloads = {n.payload for n in connection.notifies}
                        connection.notifies.clear()
                        self.forget(payloads)
        finally:
            self._deaf()
            raw.invalidate()  # LISTEN and autocommit never go back to a pool


_active: dict[sa.Engine, CallerCache] = {}


def cache_of(engine: sa.Engine | sa.Connection) -> CallerCache | None:
    """The cache of the worker serving on ``engine``, while it runs."""
    return _active.get(engine) if isinstance(engine, sa.Engine) else None


class _Served:
    """A cache, registered for a worker's engines from its start to its end."""

    def __init__(self, cache: CallerCache, engines: Sequence[sa.Engine]) -> None:
        self.cache = cache
        self.engines = engines

    def start(self) -> None:
        for engine in self.engines:
            _active[engine] = self.cache
        self.cache.start()

    def stop(self) -> None:
        for engine in self.engines:
            if _active.get(engine) is self.cache:
                del _active[engine]
        self.cache.stop()


_CHANGED = "tecnorev.auth.changed_callers"


def changed(session: orm.Session, user_id: int) -> None:
    """Note that ``session`` changes what ``user_id`` may do: once it commits, every cache of
    this process forgets the user (the others, when the notification reaches them)."""
    session.info.setdefault(_CHANGED, set()).add(user_id)


@event.listens_for(orm.Session, "after_commit")
def _forget_committed(session: orm.Session) -> None:
    users = session.info.pop(_CHANGED, None)
    if users:
        for cache in set(_active.values()):
            cache.forget(str(user) for user in users)


def background(engines: Sequence[sa.Engine]) -> _Served | None:
    """auth's background work in an API worker (``Module.background``): the caller cache on
    PostgreSQL, unless ``TECNOREV_CALLER_CACHE_SECONDS`` is 0 or a transaction pooler
    stands between (it does not pass notifications on)."""
    from tecnorev.auth.config import AuthSettings
    from tecnorev.core.db import create_db_engine
    from tecnorev.core.settings import get_settings

    primary = engines[0]
    max_age = AuthSettings().caller_cache_seconds
    if primary.dialect.name != "postgresql" or max_age <= 0:
        return None
    if get_settings().db_pooler == "transaction":
        log.info("caller cache: off behind a transaction pooler (no notifications)")
        return None
    listener = create_db_engine(
        primary.url.render_as_string(hide_password=False),
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=False,
        connect_args=dict(KEEPALIVES),
    )
    return _Served(CallerCache(listener, max_age), engines)
