"""Reads on streaming replicas, with read-your-writes.

Where the product stands (``TECNOREV_READ_REPLICA_URLS``): public reads (``ReadSessionDep``)
go to a replica, the rest to the primary.  A client must see its own writes, so after each
write request the primary's WAL position (``pg_current_wal_lsn()``, taken after the commit) is
handed back in the ``X-Tecnorev-LSN`` header and the ``tecnorev_lsn`` cookie; a read carrying a
position goes to a replica only if that replica has replayed past it, else to the primary.

Why a position rather than a window of time after a write ("sticky primary"): it is exact
(a replica caught up a millisecond after the commit serves at once, one lagging a minute
never does), it needs no memory shared by the API's processes and hosts (the client carries
it), and it costs one short query after a write.  GitLab's load balancer does the same.

A thread per worker asks every replica, each ``TECNOREV_REPLICA_CHECK_INTERVAL``, how far it
has replayed; the primary, how far it has written.  A replica that does not answer, is not in
recovery, or is further behind than ``TECNOREV_REPLICA_MAX_LAG`` serves nothing until it is
back; the positions are those of the last check, so a read may go to the primary a little
more often than needed, never to a replica that lacks its client's write.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tecnorev.core import metrics
from tecnorev.core.errors import first_line

log = logging.getLogger("tecnorev.replicas")

HEADER = "X-Tecnorev-LSN"
COOKIE = "tecnorev_lsn"
# a position older than this is met by every replica that serves at all
COOKIE_SECONDS = 300

_REPLICA = sa.text(
    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
    "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
)
_PRIMARY = sa.text("SELECT pg_current_wal_lsn()::text")


def parse_lsn(text: str | None) -> int | None:
    """``16/B374D848`` as a number (PostgreSQL's ``pg_lsn``), or None when it is not one."""
    if not text:
        return None
    high, sep, low = text.strip().partition("/")
    if not sep or len(high) > 8 or len(low) > 8:
        return None
    try:
        return (int(high, 16) << 32) | int(low, 16)
    except ValueError:
        return None


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@dataclass
class Replica:
    """One replica and what its last check found."""

    name: str  # its host:port, for logs, /ready and metrics (never its password)
    engine: sa.Engine
    up: bool = False
    replayed: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    problem: str | None = "not checked yet"
    checked_at: float = field(default=0.0)

    def serves(self, max_lag: float) -> bool:
        return self.up and self.lag_seconds is not None and self.lag_seconds <= max_lag

    def report(self, max_lag: float) -> dict[str, Any]:
        state = "serving" if self.serves(max_lag) else ("lagging" if self.up else "down")
        return {
            "name": self.name,
            "state": state,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "lag_bytes": self.lag_bytes,
            "problem": self.problem,
        }


class ReadRouter:
    """Which engine a read runs on; see the module's docstring."""

    def __init__(
        self,
        primary: sa.Engine,
        fallback: sa.Engine,
        replicas: Sequence[tuple[str, sa.Engine]],
        *,
        max_lag: float,
        interval: float,
    ) -> None:
        self.primary = primary  # asked for its WAL position
        self.fallback = fallback  # the primary's reading engine
        self.replicas = [Replica(name, engine) for name, engine in replicas]
        self.max_lag = max_lag
        self.interval = interval
        self._turn = itertools.count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written: int | None = None  # the primary's position at the last check

    # --- choosing ---------------------------------------------------------------------------

    def reader(self, after: int | None) -> tuple[sa.Engine, Replica | None]:
        """A replica that serves and has replayed ``after`` (a client's last write), in
        turn; else the primary's reading engine."""
        ready = [
            r
            for r in self.replicas
            if r.serves(self.max_lag) and (after is None or (r.replayed or 0) >= after)
        ]
        if not ready:
            return self.fallback, None
        chosen = ready[next(self._turn) % len(ready)]
        return chosen.engine, chosen

    def position(self) -> int | None:
        """The primary's WAL position now (after a commit: covers it)."""
        try:
            with self.primary.connect() as connection:
                return parse_lsn(connection.execute(_PRIMARY).scalar())
        except sa.exc.SQLAlchemyError as exc:
            log.warning("the primary's WAL position could not be read: %s", exc)
            return None

    # --- checking ---------------------------------------------------------------------------

    def check(self) -> None:
        """Ask the primary and every replica where they stand (the checking thread's work,
        run once at start-up too)."""
        written = self.position()
        if written is not None:
            self.written = written
        for replica in self.replicas:
            self._check(replica)

    def _check(self, replica: Replica) -> None:
        was_serving = replica.serves(self.max_lag)
        try:
            with replica.engine.connect() as connection:
                recovering, replayed, seconds = connection.execute(_REPLICA).one()
        except sa.exc.SQLAlchemyError as exc:
            replica.up, replica.problem = False, f"unreachable: {first_line(exc)}"
        else:
            position = parse_lsn(replayed)
            if not recovering or position is None:
                replica.up, replica.problem = False, "not a streaming replica (not in recovery)"
            else:
                replica.up, replica.problem, replica.replayed = True, None, position
                behind = max((self.written or position) - position, 0)
                replica.lag_bytes = behind
                # replay time says nothing when nothing was written since: caught up is 0
                replica.lag_seconds = 0.0 if behind == 0 else max(float(seconds or 0.0), 0.0)
                if replica.lag_seconds > self.max_lag:
                    replica.problem = (
                        f"{replica.lag_seconds:.1f}s behind, more than "
                        f"TECNOREV_REPLICA_MAX_LAG={self.max_lag:g}s"
                    )
        replica.checked_at = time.monotonic()
        serving = replica.serves(self.max_lag)
        metrics.REPLICA_SERVING.labels(replica.name).set(1 if serving else 0)
        if replica.lag_seconds is not None:
            metrics.REPLICA_LAG_SECONDS.labels(replica.name).set(replica.lag_seconds)
        if replica.lag_bytes is not None:
            metrics.REPLICA_LAG_BYTES.labels(replica.name).set(replica.lag_bytes)
        if was_serving != serving:
            if was_serving:
                log.warning("read replica %s set aside: %s", replica.name, replica.problem)
            else:
                log.info("read replica %s serves reads", replica.name)

    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="tecnorev-replicas", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the thread must outlive any one failure
                log.exception("checking the read replicas failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 10)
        for replica in self.replicas:
            replica.engine.dispose()
        self.primary.dispose()

    def report(self) -> list[dict[str, Any]]:
        return [replica.report(self.max_lag) for replica in self.replicas]


def replica_name(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class HandOutPosition:
    """ASGI middleware: the answer to a write request that succeeded carries the primary's
    WAL position after its commit (header and cookie), for the client's next reads.  The
    request's unit of work is committed before its answer starts (``session``)."""

    def __init__(self, app: Any, router: ReadRouter) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in _UNSAFE:
            await self.app(scope, receive, send)
            return

        async def send_with_position(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                position = await anyio.to_thread.run_sync(self.router.position)
                if position is not None:
                    text = format_lsn(position)
                    cookie = (
                        f"{COOKIE}={text}; Max-Age={COOKIE_SECONDS}; Path=/; SameSite=Lax; HttpOnly"
                    )
                    headers = [
                        *message.get("headers", []),
                        (HEADER.lower().encode(), text.encode()),
                        (b"set-cookie", cookie.encode()),
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_position)
