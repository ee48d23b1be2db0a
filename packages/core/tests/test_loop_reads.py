"""Reads that wait for PostgreSQL on the event loop (``tecnorev.core.web.loop_reads``), on a
real server: the loop keeps serving while they wait, a pool that is out of connections or
opening its first one never blocks it, a silent server is given up on, and a cancelled read
ends with its connection back in the pool, idle."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psycopg2
import pytest
import sqlalchemy as sa

from tecnorev.core.db import create_db_engine
from tecnorev.core.web.loop_reads import LoopConnection, LoopQueuePool, _Connections, on_loop
from tecnorev.core.web.session import Reader, reading_engine, run_read

pytestmark = pytest.mark.timeout(60)
BOUND = 30.0  # seconds any wait below may take before the test fails instead of hanging


def _reader(url: str, **kwargs: object) -> sa.Engine:
    return reading_engine(create_db_engine(url), **kwargs)


def _value(engine: sa.Engine, sql: str) -> object:
    reader = Reader(engine)
    try:
        return reader.connection().execute(sa.text(sql)).scalar_one()
    finally:
        reader.close()


def _run(coroutine: object) -> object:
    return asyncio.run(asyncio.wait_for(coroutine, BOUND))  # type: ignore[arg-type]


class Ticker:
    """Counts its turns on the event loop while in use: a read that blocked the loop's
    thread would leave it none."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.ticks = 0
        self._task: asyncio.Future[None] | None = None

    async def _tick(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(self.pause)

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
def readers(postgres_url: str) -> Iterator[Callable[..., sa.Engine]]:
    """Reading engines on a fresh database, with the pool options given; disposed after."""
    made: list[sa.Engine] = []

    def make(**options: object) -> sa.Engine:
        made.append(_reader(postgres_url, **{"max_overflow": 0, "pool_timeout": BOUND, **options}))
        return made[-1]

    yield make
    for each in made:
        each.dispose()


@pytest.fixture
def engine(readers: Callable[..., sa.Engine]) -> sa.Engine:
    return readers(pool_size=2)


def test_a_reading_engine_on_postgresql_reads_on_the_loop_once_it_has_connected(engine):
    assert isinstance(engine.pool, LoopQueuePool)
    assert not on_loop(engine)  # the first connection is opened in a thread

    async def read() -> list[tuple[object, bool]]:
        loop_thread = threading.get_ident()

        def where(sql: str) -> tuple[object, bool]:
            return _value(engine, sql), threading.get_ident() == loop_thread

        return [await run_read(where, f"SELECT {i}", on=engine) for i in range(2)]

    # the first read opened the pool's first connection in a thread; the next ran on the loop
    assert _run(read()) == [(0, False), (1, True)]
    assert on_loop(engine)


def test_the_loop_serves_other_work_while_reads_wait_for_the_server(engine):
    _value(engine, "SELECT 1")  # connected: reads now run on the loop

    async def scenario() -> tuple[list[object], int]:
        async with Ticker() as ticker:
            reads = [
                run_read(_value, engine, f"SELECT {i} FROM pg_sleep(0.3)", on=engine)
                for i in range(2)
            ]
            values = await asyncio.gather(*reads)
        return values, ticker.ticks

    values, ticks = _run(scenario())
    assert values == [0, 1]
    # a read that blocked the loop's thread would have left the ticker no turn at all
    assert ticks > 10


def test_reads_beyond_the_pool_await_a_returned_connection_in_order(readers):
    # no ping at checkout: its round trip, between the hand-off and the read, would let a
    # read handed a connection later overtake one handed a connection earlier
    engine = readers(pool_size=2, pool_pre_ping=False)
    _value(engine, "SELECT 1")
    served: list[int] = []  # the reads in the order they got a connection
    holding = peak = 0

    def read(i: int) -> int:
        nonlocal holding, peak
        reader = Reader(engine)
        try:
            connection = reader.connection()
            served.append(i)
            holding += 1
            peak = max(peak, holding)
            value = connection.execute(sa.text(f"SELECT {i} FROM pg_sleep(0.05)")).scalar_one()
            holding -= 1
            return int(value)
        finally:
            reader.close()

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(run_read(read, i, on=engine) for i in range(6))))

    assert _run(scenario()) == list(range(6))
    # two connections for six reads, handed out first come first served
    assert served == list(range(6))
    assert peak == 2
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_a_read_that_finds_no_connection_within_the_pool_timeout_fails_without_blocking(
    readers,
):
    engine = readers(pool_size=1, pool_timeout=1.0)
    _value(engine, "SELECT 1")
    held = engine.connect()  # a thread's read holds the only connection
    held.execute(sa.text("SELECT 1"))

    async def scenario() -> tuple[BaseException | None, int]:
        error = None
        async with Ticker(0.01) as ticker:
            try:
                await run_read(_value, engine, "SELECT 1", on=engine)
            except sa.exc.TimeoutError as exc:
                error = exc
        return error, ticker.ticks

    error, ticks = _run(scenario())
    assert isinstance(error, sa.exc.TimeoutError)
    assert ticks > 5  # the loop went on while the read waited
    held.close()
    # the connection the thread gave back serves the loop's next read
    assert _run(run_read(_value, engine, "SELECT 7", on=engine)) == 7


def test_a_connection_a_thread_returns_wakes_a_read_waiting_on_the_loop(readers):
    engine = readers(pool_size=1)
    _value(engine, "SELECT 1")
    held = engine.connect()
    held.execute(sa.text("SELECT 1"))
    threading.Timer(0.3, held.close).start()
    assert _run(run_read(_value, engine, "SELECT 8", on=engine)) == 8


def test_many_first_reads_at_once_do_not_stall_the_loop(readers):
    engine = readers(pool_size=3)

    async def scenario() -> list[object]:
        reads = [run_read(_value, engine, f"SELECT {i}", on=engine) for i in range(12)]
        return list(await asyncio.gather(*reads))

    assert _run(scenario()) == list(range(12))
    assert on_loop(engine)


def test_a_cancelled_read_finishes_its_statement_and_returns_its_connection_idle(engine):
    _value(engine, "SELECT 1")
    ended = threading.Event()

    def slow() -> object:
        value = _value(engine, "SELECT 1 FROM pg_sleep(0.4)")
        ended.set()
        return value

    async def scenario() -> bool:
        read = asyncio.ensure_future(run_read(slow, on=engine))
        await asyncio.sleep(0.1)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        return ended.is_set()

    # the caller learns of the cancellation only once the read ended
    assert _run(scenario()) is True
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    with engine.connect() as connection:
        # nothing left under way on the connection
        assert connection.execute(sa.text("SELECT 5")).scalar_one() == 5


def test_errors_from_the_server_arrive_as_sqlalchemys_and_leave_the_connection_usable(engine):
    _value(engine, "SELECT 1")

    async def scenario() -> object:
        with pytest.raises(sa.exc.DataError):
            await run_read(_value, engine, "SELECT 1 / 0", on=engine)
        # read-only, as every reading engine
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
            await run_read(_value, engine, "CREATE TABLE nope (id int)", on=engine)
        return await run_read(_value, engine, "SELECT 9", on=engine)

    assert _run(scenario()) == 9


def test_a_reading_connection_works_in_a_thread_as_a_blocking_one(engine):
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT generate_series(1, 3)")).scalars().all()
        assert rows == [1, 2, 3]
        dbapi = connection.connection.driver_connection
        assert isinstance(dbapi, LoopConnection)
        assert dbapi.autocommit is True
        dbapi.commit()  # nothing to end: no error either
        dbapi.rollback()
        with pytest.raises(psycopg2.NotSupportedError):
            dbapi.autocommit = False
        with pytest.raises(psycopg2.NotSupportedError):
            dbapi.cursor("named")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose listener completes TCP handshakes and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_a_silent_server_is_given_up_on_after_the_connect_timeout(silent_server):
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{silent_server}/x?connect_timeout=2"
    engine = reading_engine(create_db_engine(url), pool_size=1, max_overflow=0)
    try:
        started = time.monotonic()
        with pytest.raises(sa.exc.OperationalError, match="timeout expired"):
            engine.connect()
        assert time.monotonic() - started < BOUND

        async def on_the_loop() -> None:
            # the pool has no connection yet: the read goes through a thread, and fails there
            with pytest.raises(sa.exc.OperationalError, match="timeout expired"):
                await run_read(_value, engine, "SELECT 1", on=engine)

        _run(on_the_loop())
    finally:
        engine.dispose()


def test_a_silent_server_met_while_reading_on_the_loop_fails_the_connect_in_time(silent_server):
    """A pool that once connected and now meets a silent server (its connections lost, the
    address black-holed) opens the next connection on the loop: the connect timeout bounds
    it there too, and the loop keeps serving meanwhile."""
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{silent_server}/x?connect_timeout=2"
    engine = reading_engine(create_db_engine(url), pool_size=1, max_overflow=0)
    engine.pool.ready = True  # type: ignore[attr-defined]  # as after a first connection
    try:

        async def scenario() -> int:
            async with Ticker(0.05) as ticker:
                with pytest.raises(sa.exc.OperationalError, match="timeout expired"):
                    await run_read(_value, engine, "SELECT 1", on=engine)
            return ticker.ticks

        assert _run(scenario()) > 5
    finally:
        engine.dispose()


def test_a_connection_returned_for_a_waiter_whose_loop_closed_stays_in_the_pool():
    queue = _Connections()
    gone = asyncio.new_event_loop()
    queue._awaiting.append(gone.create_future())
    gone.close()  # stopped without its waiters being cancelled
    queue.put("connection")
    assert queue.get_nowait() == "connection"
