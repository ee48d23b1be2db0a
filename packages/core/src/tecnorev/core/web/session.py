"""One unit of work per request.

The session is committed once, after the route returned and its response was rendered but
before a byte is sent (``scope="function"``): since FastAPI 0.118 the code after ``yield`` of a
request-scoped dependency runs after the response went out, so a commit there could fail while
the client already holds a 200.  Any error rolls everything back, except a domain error that
asks to keep its changes.  Events published on the session are delivered after the commit, to
the subscribers of the app's registry (``app.state.registry``; default: the installed modules).

The dependency is ``async``: opening a session does no I/O (a connection is checked out at
its first statement, in the route's worker thread), so only the commit or rollback goes
through the thread pool.  A sync dependency would cost a thread hand-off on entry and
another on exit, on every request.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import anyio
import sqlalchemy as sa
from anyio.lowlevel import RunVar
from fastapi import Depends, Request
from sqlmodel import Session

from tecnorev.core.direct import DRIVERS as DIRECT_DRIVERS
from tecnorev.core.direct import prepare_on
from tecnorev.core.errors import DomainError
from tecnorev.core.events import REGISTRY, deliver, has_queued, take_committed
from tecnorev.core.settings import CoreSettings
from tecnorev.core.web.loop_reads import loop_reading, on_loop, read_on_loop
from tecnorev.core.web.read_replicas import COOKIE as LSN_COOKIE
from tecnorev.core.web.read_replicas import HEADER as LSN_HEADER
from tecnorev.core.web.read_replicas import parse_lsn

if TYPE_CHECKING:
    from tecnorev.core.registry import Registry

T = TypeVar("T")


def request_engine(request: Request) -> sa.Engine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        from tecnorev.core.db import get_engine

        engine = request.app.state.engine = get_engine()
    return engine


async def get_session(request: Request) -> AsyncIterator[Session]:
    engine = request_engine(request)
    registry = getattr(request.app.state, "registry", None)
    session = Session(engine, expire_on_commit=False)
    if registry is not None:
        session.info[REGISTRY] = registry
    try:
        yield session
    except DomainError as exc:
        await _finish(session, engine, registry, commit=exc.keep_changes)
        raise
    except BaseException:
        await _finish(session, engine, registry, commit=False)
        raise
    await _finish(session, engine, registry, commit=True)


async def _finish(
    session: Session, engine: sa.Engine, registry: Registry | None, *, commit: bool
) -> None:
    # Shielded: a client that disconnects must not leave the transaction open or half done.
    with anyio.CancelScope(shield=True):
        if session.in_transaction() or (commit and has_queued(session)):
            await anyio.to_thread.run_sync(
                _end, session, commit, limiter=_limiter(_ENDING, lambda: ENDING_THREADS)
            )
        else:
            # nothing began, or the route committed itself (see ``commit_rendered``)
            session.close()
        events = take_committed(session) if commit else []
        if events:
            await anyio.to_thread.run_sync(
                lambda: deliver(events, engine=engine, registry=registry)
            )


def commit_rendered(session: Session) -> None:
    """Commit the request's unit of work from the route itself, once its response is
    rendered (a ``Response`` it returns): the commit then runs in the route's thread rather
    than in one more thread hand-off after it.  Events are still delivered after it; a
    failing commit is still the request's error, and nothing of it is stored."""
    session.commit()


def _end(session: Session, commit: bool) -> None:
    with session:
        if commit:
            session.commit()
        else:
            session.rollback()


# Ending a transaction has threads of its own.  With the shared pool only, requests blocked
# on a row lock could hold every thread while the request holding that lock waits for one
# to commit: the worker would stop for good.  A commit or rollback never waits for a lock.
_ENDING: RunVar[anyio.CapacityLimiter] = RunVar("tecnorev_ending_transactions")
ENDING_THREADS = 16
READ_THREADS: int = CoreSettings.model_fields["read_threads"].default


def read_threads() -> int:
    """Threads per process for ``run_read``: ``TECNOREV_READ_THREADS``, else two.  Two keep
    up with a database on the same network (round trips well under a millisecond); raise it
    for a far one, so more reads wait for it at once."""
    return CoreSettings().read_threads


def _limiter(
    var: RunVar[anyio.CapacityLimiter], threads: Callable[[], int]
) -> anyio.CapacityLimiter:
    """The event loop's limiter kept in ``var`` (one per loop, as anyio's own pool)."""
    try:
        return var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(threads())
        var.set(limiter)
        return limiter


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_read_session(request: Request) -> AsyncIterator[Session]:
    session = Session(_reader(request), expire_on_commit=False)
    try:
        yield session
    finally:
        # Autocommit left no transaction open: returning the connection to the pool sends
        # nothing to the database, so it needs no thread.
        session.close()


class Connectable(Protocol):
    """What statements sent straight to a connection need (``Reader``, or a ``Session``)."""

    def connection(self) -> sa.Connection: ...
    def get_bind(self) -> sa.Engine | sa.Connection: ...


class Reader:
    """One connection of a reading engine for a request that reads pages of rows with Core
    statements (the listings): checked out at its first statement, in the thread that reads,
    and given back when the request ends.

    What ``ReadSessionDep`` gives without the ORM's unit of work, which a read in autocommit
    does not use: a ``Session`` costs about 70 µs more per request to open and close than
    the connection it holds (measured on the reading pool, in-process)."""

    __slots__ = ("_connection", "engine")

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._connection: sa.Connection | None = None

    def get_bind(self) -> sa.Engine:
        return self.engine

    def connection(self) -> sa.Connection:
        if self._connection is None:
            self._connection = self.engine.connect()
        return self._connection

    def close(self, _error: BaseException | None = None) -> None:
        if self._connection is not None:
            # autocommit: nothing to end, and the pool's return sends nothing either
            self._connection.close()
            self._connection = None


async def get_reader(request: Request) -> AsyncIterator[Reader]:
    reader = Reader(_reader(request))
    try:
        yield reader
    finally:
        reader.close()


def _reader_from_request(request: Request) -> tuple[Reader, Callable[[Any], None]]:
    reader = Reader(_reader(request))
    return reader, reader.close


get_reader.from_request = _reader_from_request  # type: ignore[attr-defined]


def _reader(request: Request) -> sa.Engine:
    """A read replica that has this client's last write (``app.state.read_router``, see
    ``read_replicas``), else the app's reading engine: ``app.state.read_engine``, else one made
    for its engine."""
    router = getattr(request.app.state, "read_router", None)
    if router is not None:
        after = parse_lsn(request.headers.get(LSN_HEADER) or request.cookies.get(LSN_COOKIE))
        engine, _ = router.reader(after)
        return engine
    return primary_reader(request)


def primary_reader(request: Request) -> sa.Engine:
    """The app's reading engine on the primary (``app.state.read_engine``, else one made for
    its engine): for a read that must see every commit, such as who the caller is."""
    reader = getattr(request.app.state, "read_engine", None)
    if reader is None:
        reader = request.app.state.read_engine = reading_engine(request_engine(request))
    return reader


def reading_engine(engine: sa.Engine, **kwargs: Any) -> sa.Engine:
    """An engine on ``engine``'s database whose connections stay in autocommit mode and
    refuse to write.

    A pool of its own: switching a pooled connection to autocommit and back costs a round
    trip at every return to the pool, which this avoids.  Read-only, because a write here
    would be committed at once, outside the request's unit of work.  On PostgreSQL its
    reads may wait on the event loop (``loop_reads``).
    """
    from tecnorev.core.db import create_db_engine

    if engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:"):
        # another engine would open another, empty, in-memory database: share this one
        return engine
    url = engine.url.render_as_string(hide_password=False)
    reader = create_db_engine(url, isolation_level="AUTOCOMMIT", **loop_reading(engine.url, kwargs))
    if CoreSettings().db_pooler != "transaction":
        # session state: through a transaction pooler it would stay on a server connection
        # that another client's writes get next (and a prepared statement would be missing
        # from the next one)
        sa.event.listen(reader, "connect", _read_only)
        if reader.dialect.driver in DIRECT_DRIVERS:
            sa.event.listen(reader, "connect", prepare_on)
    return reader


def _read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor.execute("PRAGMA query_only = ON")
    else:
        cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        dbapi_connection.commit()
    cursor.close()


async def run_read(
    function: Callable[..., T], *args: Any, on: sa.Engine | Connectable | None = None
) -> T:
    """Run a blocking read: on the event loop when it reads on ``on`` (an engine, or what a
    route reads with) and that engine's connections wait there (``loop_reads``), else on
    the reading threads.

    The reading threads are a few per process (``read_threads``), apart from the pool that
    routes and their locks use.  A busy read path fills the process with threads that fight
    for the GIL, and the event loop, which parses every request, waits behind them: latency
    grows a tail.  Reads are short, so a handful of threads keeps up with them while the
    loop stays responsive.  They are a ``ThreadPoolExecutor`` per event loop rather than
    anyio's: at 32 requests in flight a hand-off costs 35-40 µs of CPU there against about
    90 µs through ``anyio.to_thread`` (its limiter and cancel scope per call).
    """
    if on is not None and on_loop(on if isinstance(on, sa.Engine) else _bound_engine(on)):
        return await read_on_loop(function, *args)
    loop = asyncio.get_running_loop()
    pool = _read_pools.get(loop)
    if pool is None:
        pool = _read_pools[loop] = ThreadPoolExecutor(read_threads(), "tecnorev-read")
    # the caller's context goes along (log fields, the trace), as anyio's threads take it
    future = pool.submit(contextvars.copy_context().run, function, *args)
    try:
        return await asyncio.wrap_future(future, loop=loop)
    except asyncio.CancelledError:
        # A read not started yet never runs.  One under way goes on in its thread, on its
        # connection: the caller learns of the cancellation once it ended, so nothing
        # (a route's closer) gives that connection back while it is in use.
        if not future.done():
            with anyio.CancelScope(shield=True):
                await asyncio.wait([asyncio.wrap_future(future, loop=loop)])
        raise


def _bound_engine(reader: Connectable) -> sa.Engine:
    bind = reader.get_bind()
    return bind if isinstance(bind, sa.Engine) else bind.engine


# one pool of reading threads per event loop (as anyio's limiters are), ended with it
_read_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ThreadPoolExecutor] = (
    weakref.WeakKeyDictionary()
)


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
"""A session for a route that only reads: each statement runs on its own, without a
transaction, so a one-statement read costs one round trip and one thread hand-off.
Several statements do not share a snapshot; use ``SessionDep`` where they must agree."""


ReaderDep = Annotated[Reader, Depends(get_reader, scope="function")]
"""A ``Reader`` on the same engine ``ReadSessionDep`` would use (a replica, when one has the
client's writes): for routes that read with Core statements only, as the listings do."""
