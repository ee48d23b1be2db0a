"""Reads that wait for PostgreSQL on the event loop instead of in a thread.

A listing page is a few short statements and a JSON body.  Sent from a thread, each page
costs two hand-offs between the event loop and that thread, and the threads and the loop take
the GIL from each other at every wait for the database.  Here the page's (synchronous) code
runs on the event loop itself, in a greenlet (SQLAlchemy's ``greenlet_spawn``): where a
statement waits for the server, the greenlet hands the loop back until the connection's
socket is ready, and other requests go on meanwhile.  Measured with one worker and 32
clients: the order page went from 1.6 to 1.24 ms of the worker's CPU per request (570 to 810
requests/s), the product list from 0.90 to 0.63 ms.

The connections are psycopg2's asynchronous ones (``LoopConnection``), made by the reading
engines (``loop_reading``).  They stay ordinary DBAPI connections to every other user: in a
thread (a route that is not ``async``) a statement waits for its socket with ``poll``.
Asynchronous connections are always in autocommit, which is how the reading engines use
them; ``commit`` and ``rollback`` have nothing to end.

At most ``TECNOREV_LOOP_READS`` reads run at once on a worker's loop (first come, first
served), as ``TECNOREV_READ_THREADS`` bounds the reading threads.  The pool hands out the
connection returned last: a few warm server processes serve the reads rather than every
connection of the pool in turn (760 to 815 requests/s on the order page).

Three things must never block the loop's thread, and do not:

* opening a connection: it is polled as any statement is, and gives up after the connect
  timeout (libpq does not bound an asynchronous connect itself);
* waiting for a free connection of the pool, which threads share: a read on the loop awaits
  the next connection returned (``LoopQueuePool``), within the pool's timeout;
* SQLAlchemy's first connection of a pool, which runs its set-up under a thread lock: a read
  goes through a thread until the pool has opened one (``on_loop``).

A read cancelled on the loop (its client went away) ends as a read in a thread does: it
finishes first, so its connection goes back to the pool with nothing under way.  A
statement that reaches the loop on a connection of another engine would block it: the
reading engines' connections are the only ones a read on the loop may use.
"""

from __future__ import annotations

import asyncio
import select
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from sqlalchemy.pool import QueuePool
from sqlalchemy.util.concurrency import await_only, greenlet_spawn, in_greenlet
from sqlalchemy.util.queue import Empty, Queue

from tecnorev.core.settings import CoreSettings

T = TypeVar("T")
DRIVER = "psycopg2"
_OK, _READ, _WRITE = (
    psycopg2.extensions.POLL_OK,
    psycopg2.extensions.POLL_READ,
    psycopg2.extensions.POLL_WRITE,
)
DEFAULT_CONNECT_TIMEOUT = 10.0


class ConnectTimeout(psycopg2.OperationalError):
    """The server did not complete the connection within the connect timeout."""


def wait(connection: Any, deadline: float | None = None) -> None:
    """Drive ``connection`` (its connect, or the statement it sent) until it is done: the
    loop is handed back while its socket is not ready when called in a read on the loop,
    else the thread waits in ``poll``.  ``deadline`` (``time.monotonic()``) bounds the
    whole wait."""
    while True:
        state = connection.poll()
        if state == _OK:
            return
        if state not in (_READ, _WRITE):  # pragma: no cover - psycopg2 has no other state
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        _ready(connection.fileno(), state == _WRITE, deadline)


def _ready(fd: int, write: bool, deadline: float | None) -> None:
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    if in_greenlet():
        await_only(_socket_ready(fd, write, timeout))
        return
    # poll, not select: a busy server's descriptors go past select's limit of 1024
    waiting = select.poll()
    waiting.register(fd, select.POLLOUT if write else select.POLLIN)
    if not waiting.poll(None if timeout is None else timeout * 1000):
        raise ConnectTimeout("timeout expired")


async def _socket_ready(fd: int, write: bool, timeout: float | None) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        if timeout is None:
            await ready
        else:
            try:
                await asyncio.wait_for(ready, timeout)
            except TimeoutError:
                raise ConnectTimeout("timeout expired") from None
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


class LoopCursor(psycopg2.extensions.cursor):
    """A cursor whose ``execute`` returns once the statement's result has arrived."""

    def execute(self, query: Any, vars: Any = None) -> None:
        super().execute(query, vars)
        _finish(self.connection)

    def executemany(self, query: Any, vars_list: Any) -> None:
        # an asynchronous connection runs one statement at a time
        for vars in vars_list:
            self.execute(query, vars)

    def callproc(self, *_args: Any, **_kwargs: Any) -> Any:
        raise psycopg2.NotSupportedError("callproc is not available on a reading connection")


def _finish(connection: Any) -> None:
    try:
        wait(connection)
    except BaseException:
        # Anything but the server's answer (never a cancellation: see ``read_on_loop``)
        # left a statement under way: the connection cannot serve again; the pool drops it.
        if not isinstance(sys.exc_info()[1], psycopg2.Error):
            connection.close()
        raise


class LoopConnection(psycopg2.extensions.connection):
    """psycopg2's asynchronous connection, connected when made and usable as a blocking one
    (see the module).  Always in autocommit."""

    def __init__(self, dsn: str, *_async: Any) -> None:
        super().__init__(dsn, 1)  # type: ignore[call-arg]  # psycopg2's async flag
        found = psycopg2.extensions.parse_dsn(dsn).get("connect_timeout")
        timeout = float(found) if found else DEFAULT_CONNECT_TIMEOUT
        # as libpq: zero waits for ever, and less than 2 s is taken as 2 s
        deadline = None if timeout <= 0 else time.monotonic() + max(timeout, 2.0)
        try:
            wait(self, deadline)
        except BaseException:
            self.close()
            raise
        self.cursor_factory = LoopCursor

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs.get("name"):
            raise psycopg2.NotSupportedError("a reading connection has no named cursors")
        if kwargs.get("cursor_factory") not in (None, LoopCursor):
            # another cursor class would return before its statement's result arrived
            raise psycopg2.NotSupportedError("a reading connection makes its own cursors")
        kwargs.pop("cursor_factory", None)
        return super().cursor(**kwargs)

    def commit(self) -> None:
        """Nothing to commit: each statement was its own transaction."""

    def rollback(self) -> None:
        """Nothing to roll back (see ``commit``)."""

    @property
    def autocommit(self) -> bool:
        return True

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if not value:
            raise psycopg2.NotSupportedError("a reading connection is always in autocommit")

    def set_isolation_level(self, level: int) -> None:  # type: ignore[override]
        if level != psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT:
            raise psycopg2.NotSupportedError("a reading connection is always in autocommit")


class _Connections(Queue[Any]):
    """SQLAlchemy's queue of pooled connections, in which a read on the loop awaits a
    connection where a thread would block.  A connection returned (from any thread) goes
    straight to the read that has waited longest: first come, first served, so no read
    waits through many hand-outs while later ones are served (threads are served by the
    queue when no read on a loop waits)."""

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._awaiting: deque[asyncio.Future[Any]] = deque()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block and in_greenlet():
            return await_only(self._next(timeout))
        return super().get(block, timeout)

    async def _next(self, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        with self.mutex:
            if self._qsize() and not self._awaiting:
                item = self._get()
                self.not_full.notify()
                return item
            handed: asyncio.Future[Any] = loop.create_future()
            self._awaiting.append(handed)
        try:
            return await asyncio.wait_for(handed, timeout)
        except TimeoutError:
            raise Empty() from None
        finally:
            with self.mutex:
                if handed in self._awaiting:
                    self._awaiting.remove(handed)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self.mutex:
            while self._awaiting:
                handed = self._awaiting.popleft()
                try:
                    handed.get_loop().call_soon_threadsafe(self._hand, handed, item)
                except RuntimeError:  # its loop was closed under it: the next one, if any
                    continue
                return
        super().put(item, block, timeout)

    def _hand(self, handed: asyncio.Future[Any], item: Any) -> None:
        if handed.done():  # it gave up meanwhile (timed out): to the next one, or the queue
            self.put(item)
        else:
            handed.set_result(item)


class LoopQueuePool(QueuePool):
    """``QueuePool`` whose checkouts await on the event loop (``_Connections``), and which
    knows when it has opened a connection (``ready``)."""

    _queue_class = _Connections
    ready = False

    def _do_get(self) -> Any:
        record = super()._do_get()
        # SQLAlchemy's set-up of a pool's first connection (under a thread lock) is done
        self.ready = True
        return record

    def recreate(self) -> LoopQueuePool:
        return super().recreate()  # type: ignore[return-value]  # a new pool, not ready


def loop_reading(url: sa.URL, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` for an autocommit reading engine on ``url`` whose reads may wait on the
    event loop: psycopg2 only (other drivers are left as they are), with the pool given by
    ``poolclass`` unless one is."""
    if url.get_driver_name() != DRIVER or url.get_backend_name() != "postgresql":
        return kwargs
    kwargs = dict(kwargs)
    connect_args = dict(kwargs.get("connect_args", {}))
    connect_args["connection_factory"] = LoopConnection
    kwargs["connect_args"] = connect_args
    kwargs.setdefault("poolclass", LoopQueuePool)
    kwargs.setdefault("pool_use_lifo", True)  # warm server processes (see the module)
    # hstore's types are looked up with a cursor of psycopg2's own class, which would not
    # wait for its result; no column of the product is an hstore
    kwargs["use_native_hstore"] = False
    return kwargs


def on_loop(engine: sa.Engine) -> bool:
    """Whether a read on ``engine`` may run on the event loop now: its connections wait
    there and its pool has opened one (see the module)."""
    pool = engine.pool
    return isinstance(pool, LoopQueuePool) and pool.ready


async def read_on_loop(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` run on the event loop, its statements awaited (see the module).

    It runs as a task of its own: cancelling the caller (a client that went away) lets it
    finish first, as a read in a thread does, and the caller then learns of it."""
    loop = asyncio.get_running_loop()
    places = _places.get(loop)
    if places is None:
        places = _places[loop] = asyncio.Semaphore(CoreSettings().loop_reads)
    async with places:
        task = asyncio.ensure_future(greenlet_spawn(function, *args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([task])
            raise


# the places for reads on each event loop (``loop_reads``), ended with it
_places: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
