"""One unit of work per request: committed once before the response is sent, rolled back on
any error (a commit-time constraint violation included), and domain events delivered only
after a commit, to subscribers that cannot break the response.

The table is plain SQLAlchemy Core, mapped with a registry of its own so nothing joins the
modules' shared metadata.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Response
from fastapi.testclient import TestClient
from sqlalchemy.orm import registry as mapper_registry

from tecnorev.core.db import create_db_engine
from tecnorev.core.errors import ConfigError, Conflict
from tecnorev.core.events import Event, publish
from tecnorev.core.module import Module
from tecnorev.core.outbox.models import OutboxMessage
from tecnorev.core.registry import Registry
from tecnorev.core.web import ReadSessionDep, SessionDep, commit_rendered, make_app, run_read
from tecnorev.core.web.session import READ_THREADS, read_threads, reading_engine

outbox = OutboxMessage.__table__
mapping = mapper_registry(metadata=sa.MetaData())
ticket = sa.Table(
    "ticket",
    mapping.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(20), nullable=False, unique=True),
)
reaction = sa.Table(
    "reaction",
    mapping.metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("code", sa.String(20), nullable=False),
)


class Ticket:
    def __init__(self, code: str) -> None:
        self.code = code


mapping.map_imperatively(Ticket, ticket)


# -- subscribers (found by dotted path, as a module's descriptor names them) --------------------

DELIVERED: list[dict[str, Any]] = []


def record_issue(session: Any, event: Event) -> None:
    """Sees what the publisher committed (its own session, its own connection) and stores a
    reaction in its own unit of work."""
    visible = session.execute(
        sa.select(sa.func.count()).select_from(ticket).where(ticket.c.code == event.payload["code"])
    ).scalar_one()
    DELIVERED.append({"event": event.name, "code": event.payload["code"], "visible": visible})
    session.execute(sa.insert(reaction).values(event=event.name, code=event.payload["code"]))
    if event.payload.get("chain"):
        publish(session, "ticket.chained", code=event.payload["code"])


def explode(_session: Any, event: Event) -> None:
    raise RuntimeError(f"subscriber broke on {event.name}")


def store_then_explode(session: Any, event: Event) -> None:
    session.execute(sa.insert(reaction).values(event="half-done", code=event.payload["code"]))
    raise RuntimeError("after a write")


SUBSCRIBERS = (
    ("ticket.issued", f"{__name__}:record_issue"),
    ("ticket.chained", f"{__name__}:record_issue"),
    ("ticket.troubled", f"{__name__}:explode"),
    ("ticket.troubled", f"{__name__}:store_then_explode"),
    ("ticket.troubled", f"{__name__}:record_issue"),
)


# -- routes ------------------------------------------------------------------------------------


class TicketRevoked(Conflict):
    """A refusal that is itself a change to keep (as a revoked token family is)."""

    code = "ticket_revoked"
    keep_changes = True


router = APIRouter()


@router.post("/tickets/{code}", status_code=201)
def issue_ticket(code: str, session: SessionDep, chain: bool = False) -> dict[str, Any]:
    session.add(Ticket(code))
    session.flush()
    publish(session, "ticket.issued", code=code, chain=chain)
    return {"code": code}


@router.post("/ticket-pairs/{first}/{second}", status_code=201)
def issue_pair(first: str, second: str, session: SessionDep) -> dict[str, Any]:
    # Nothing is flushed here: both INSERTs run at commit, after this function returned.
    session.add(Ticket(first))
    session.add(Ticket(second))
    publish(session, "ticket.issued", code=first)
    return {"pending": len(session.new)}


@router.post("/rendered-tickets/{first}/{second}", status_code=201)
def issue_rendered(first: str, second: str, session: SessionDep) -> Response:
    # The route renders its response, then commits in its own thread.
    session.add(Ticket(first))
    session.add(Ticket(second))
    publish(session, "ticket.issued", code=first)
    response = Response(b'{"rendered": true}', 201, media_type="application/json")
    commit_rendered(session)
    return response


@router.post("/refused-tickets/{code}")
def refuse_ticket(code: str, session: SessionDep) -> None:
    session.add(Ticket(code))
    session.flush()
    publish(session, "ticket.issued", code=code)
    raise Conflict(f"ticket {code} is refused")


@router.post("/revoked-tickets/{code}")
def revoke_ticket(code: str, session: SessionDep) -> None:
    session.add(Ticket(code))
    session.flush()
    publish(session, "ticket.issued", code=code)
    raise TicketRevoked(f"ticket {code} is revoked", details={"code": code})


@router.post("/troubled-tickets/{code}", status_code=201)
def troubled_ticket(code: str, session: SessionDep) -> dict[str, Any]:
    session.add(Ticket(code))
    publish(session, "ticket.troubled", code=code)
    return {"code": code}


@router.post("/savepoint-tickets/{code}", status_code=201)
def savepoint_tickets(code: str, session: SessionDep, fail: bool = False) -> dict[str, Any]:
    with session.begin_nested():
        session.add(Ticket(code))
        publish(session, "ticket.issued", code=code)
    try:
        with session.begin_nested():
            session.add(Ticket(code))  # a duplicate: this savepoint rolls back
            publish(session, "ticket.issued", code=f"{code}-duplicate")
            session.flush()
    except sa.exc.IntegrityError:
        pass
    if fail:
        raise Conflict("the request failed after its savepoints")
    return {"code": code}


@router.post("/crashing-tickets/{code}")
def crashing_ticket(code: str, session: SessionDep) -> None:
    session.add(Ticket(code))
    session.flush()
    publish(session, "ticket.issued", code=code)
    raise RuntimeError("the route failed after writing")


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(database_url)
    mapping.metadata.create_all(engine)
    OutboxMessage.__table__.create(engine)  # where publish stores events (core's branch)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine: sa.Engine) -> Iterator[TestClient]:
    DELIVERED.clear()
    registry = Registry.from_modules(
        [Module(name="tickets", package="tickets", subscribers=SUBSCRIBERS)]
    )
    app = make_app([("tickets", router)], engine=engine, registry=registry)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    DELIVERED.clear()


def codes(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(ticket.c.code).order_by(ticket.c.id)).scalars())


def reactions(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(reaction.c.event, reaction.c.code).order_by(reaction.c.id)
        )
        return [tuple(row) for row in rows]


# -- the unit of work --------------------------------------------------------------------------


def test_a_request_commits_once_and_its_rows_are_stored(client, engine):
    response = client.post("/api/v1/ticket-pairs/A-1/A-2")
    assert response.status_code == 201
    assert response.json() == {"pending": 2}
    assert codes(engine) == ["A-1", "A-2"]


def test_a_unique_violation_at_commit_time_is_a_409_and_nothing_of_the_request_is_stored(
    client, engine, backend
):
    assert client.post("/api/v1/tickets/T-1").status_code == 201
    DELIVERED.clear()

    response = client.post("/api/v1/ticket-pairs/T-2/T-1")

    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict"
    if backend == "postgresql":
        assert error["details"] == {"constraint": "ticket_code_key"}
    assert "T-1" not in response.text and "INSERT" not in response.text
    assert codes(engine) == ["T-1"]  # T-2, added by the same request, is gone too
    assert DELIVERED == []  # its event died with the transaction


def test_a_route_that_commits_its_rendered_response_keeps_the_unit_of_work(client, engine):
    response = client.post("/api/v1/rendered-tickets/C-1/C-2")
    assert (response.status_code, response.json()) == (201, {"rendered": True})
    assert codes(engine) == ["C-1", "C-2"]
    # delivered after that commit, as for any route
    assert DELIVERED == [{"event": "ticket.issued", "code": "C-1", "visible": 1}]
    DELIVERED.clear()

    failing = client.post("/api/v1/rendered-tickets/C-3/C-1")  # C-1 exists: the commit fails
    assert failing.status_code == 409, failing.text
    assert failing.json()["error"]["code"] == "conflict"
    assert codes(engine) == ["C-1", "C-2"]
    assert DELIVERED == []


def test_a_domain_error_rolls_back_what_the_route_flushed(client, engine):
    response = client.post("/api/v1/refused-tickets/R-1")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict",
        "message": "ticket R-1 is refused",
        "details": {},
    }
    assert codes(engine) == []
    assert DELIVERED == []


def test_a_domain_error_that_keeps_its_changes_commits_them_and_their_events(client, engine):
    response = client.post("/api/v1/revoked-tickets/K-1")
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "ticket_revoked",
        "message": "ticket K-1 is revoked",
        "details": {"code": "K-1"},
    }
    assert codes(engine) == ["K-1"]
    assert DELIVERED == [{"event": "ticket.issued", "code": "K-1", "visible": 1}]


def test_an_unexpected_error_rolls_back_and_delivers_nothing(client, engine):
    response = client.post("/api/v1/crashing-tickets/X-1")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert codes(engine) == []
    assert DELIVERED == []


# -- events ------------------------------------------------------------------------------------


def test_an_event_is_delivered_after_the_commit_in_a_unit_of_work_of_its_own(client, engine):
    response = client.post("/api/v1/tickets/E-1")
    assert response.status_code == 201
    # The subscriber, on another connection, already saw the publisher's row: it ran after
    # the commit.  What it wrote was committed by its own unit of work.
    assert DELIVERED == [{"event": "ticket.issued", "code": "E-1", "visible": 1}]
    assert reactions(engine) == [("ticket.issued", "E-1")]


def test_an_event_a_subscriber_publishes_reaches_the_same_registry(client, engine):
    response = client.post("/api/v1/tickets/E-2", params={"chain": "true"})
    assert response.status_code == 201
    assert [d["event"] for d in DELIVERED] == ["ticket.issued", "ticket.chained"]
    assert reactions(engine) == [("ticket.issued", "E-2"), ("ticket.chained", "E-2")]


def test_events_of_a_rolled_back_savepoint_are_dropped(client, engine):
    response = client.post("/api/v1/savepoint-tickets/S-1")
    assert response.status_code == 201, response.text
    assert codes(engine) == ["S-1"]
    assert DELIVERED == [{"event": "ticket.issued", "code": "S-1", "visible": 1}]


def test_events_of_a_released_savepoint_wait_for_the_outermost_commit(client, engine):
    response = client.post("/api/v1/savepoint-tickets/S-2", params={"fail": "true"})
    assert response.status_code == 409
    assert DELIVERED == []
    assert codes(engine) == []


def test_a_failing_subscriber_is_logged_and_changes_nothing_else(client, engine, caplog):
    caplog.set_level(logging.WARNING, logger="tecnorev.events")

    response = client.post("/api/v1/troubled-tickets/F-1")

    assert response.status_code == 201
    assert response.json() == {"code": "F-1"}
    assert codes(engine) == ["F-1"]  # the publisher's commit stands
    # The subscriber after the failing ones still ran; the one that failed after writing
    # left nothing behind.
    assert DELIVERED == [{"event": "ticket.troubled", "code": "F-1", "visible": 1}]
    assert reactions(engine) == [("ticket.troubled", "F-1")]
    # this delivery's lines (a dispatcher another test left running may log its own)
    failures = [
        r
        for r in caplog.records
        if r.name == "tecnorev.events" and "ticket.troubled" in r.getMessage()
    ]
    assert len(failures) == 2
    assert ":explode of ticket.troubled (delivery" in failures[0].getMessage()
    assert ":store_then_explode of ticket.troubled (delivery" in failures[1].getMessage()
    assert "attempt 1 of 8" in failures[0].getMessage()
    assert failures[0].error == "RuntimeError: subscriber broke on ticket.troubled"
    # Both stay in the outbox, due again later, with what went wrong
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                outbox.c.subscriber, outbox.c.status, outbox.c.attempts, outbox.c.last_error
            ).order_by(outbox.c.id)
        ).all()
    assert [(r.subscriber.rsplit(":", 1)[1], r.status.value, r.attempts) for r in rows] == [
        ("explode", "pending", 1),
        ("store_then_explode", "pending", 1),
        ("record_issue", "delivered", 1),
    ]
    assert "RuntimeError: after a write" in rows[1].last_error


# -- ending transactions never waits behind lock waiters ----------------------------------------

lock_router = APIRouter()
LOCK = 4242


@lock_router.post("/held/{code}", status_code=201)
async def hold_the_lock(code: str, session: SessionDep) -> dict[str, Any]:
    def lock_and_insert() -> None:
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})
        session.add(Ticket(code))
        session.flush()

    await anyio.to_thread.run_sync(lock_and_insert)
    await anyio.sleep(0.5)  # meanwhile the waiters take every thread of the pool
    return {"code": code}


@lock_router.post("/waiting/{code}", status_code=201)
def wait_for_the_lock(code: str, session: SessionDep) -> dict[str, Any]:
    # without the fix the holder never commits; this bounds the wait so the test ends
    session.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
    session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK})
    session.add(Ticket(code))
    session.flush()
    return {"code": code}


def test_a_request_holding_a_lock_commits_while_lock_waiters_hold_every_thread(
    postgres_url: str,
) -> None:
    engine = create_db_engine(postgres_url)
    mapping.metadata.create_all(engine)

    @asynccontextmanager
    async def two_threads(_app: Any) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        yield

    app = make_app([("locks", lock_router)], engine=engine, lifespan=two_threads)
    statuses: dict[str, int] = {}
    with TestClient(app, raise_server_exceptions=False) as client:

        def post(path: str) -> None:
            statuses[path] = client.post(path).status_code

        holder = threading.Thread(target=post, args=("/api/v1/held/a",))
        holder.start()
        time.sleep(0.2)  # the holder has its lock and sleeps
        waiters = [threading.Thread(target=post, args=(f"/api/v1/waiting/{c}",)) for c in "bc"]
        for thread in waiters:
            thread.start()
        for thread in [holder, *waiters]:
            thread.join(timeout=30)
    assert statuses == {
        "/api/v1/held/a": 201,
        "/api/v1/waiting/b": 201,
        "/api/v1/waiting/c": 201,
    }
    assert sorted(codes(engine)) == ["a", "b", "c"]
    engine.dispose()


# -- the reading session ------------------------------------------------------------------------

read_router = APIRouter()


@read_router.get("/tickets/count")
def count_tickets(session: ReadSessionDep) -> dict[str, Any]:
    total = session.execute(sa.select(sa.func.count()).select_from(ticket)).scalar_one()
    dbapi = session.connection().connection.dbapi_connection
    # psycopg2 says autocommit; sqlite3 says so with no isolation level
    autocommit = getattr(dbapi, "autocommit", None) or dbapi.isolation_level is None
    return {"count": total, "autocommit": autocommit}


@read_router.post("/tickets-through-the-reader/{code}")
def write_through_the_reader(code: str, session: ReadSessionDep) -> None:
    session.add(Ticket(code))
    session.flush()


def test_a_reading_session_runs_each_statement_on_its_own_and_cannot_write(
    engine: sa.Engine,
) -> None:
    app = make_app([("reads", read_router), ("tickets", router)], engine=engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/api/v1/tickets/a").status_code == 201
        assert client.get("/api/v1/tickets/count").json() == {"count": 1, "autocommit": True}
        # a fault in the route, not the client's: the database refuses it, nothing is stored
        refused = client.post("/api/v1/tickets-through-the-reader/b")
        assert refused.status_code >= 500, refused.text
    app.state.read_engine.dispose()
    assert codes(engine) == ["a"]


def test_reads_run_on_a_few_threads_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    active = peak = 0
    counting = threading.Lock()

    def read() -> None:
        nonlocal active, peak
        with counting:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with counting:
            active -= 1

    async def many_reads() -> None:
        # the route pool is busy too: reads still get their own threads, and no more
        anyio.to_thread.current_default_thread_limiter().total_tokens = 1
        async with anyio.create_task_group() as group:
            for _ in range(3 * READ_THREADS):
                group.start_soon(run_read, read)

    anyio.run(many_reads)
    assert peak == READ_THREADS

    # configurable, for a database far away; a nonsense value is refused by name
    monkeypatch.setenv("TECNOREV_READ_THREADS", "3")
    peak = 0
    anyio.run(many_reads)  # a new event loop: a new limiter
    assert peak == 3
    for bad in ("0", "many", "-2"):
        monkeypatch.setenv("TECNOREV_READ_THREADS", bad)
        with pytest.raises(ConfigError, match="TECNOREV_READ_THREADS"):
            read_threads()


def test_a_cancelled_read_under_way_ends_before_its_request_is_cancelled() -> None:
    # the read's connection is the request's: it must not be given back while in use, and a
    # read still waiting for a thread never runs
    started, release = threading.Semaphore(0), threading.Event()
    ran: list[str] = []

    def read(name: str) -> str:
        started.release()
        release.wait(10)
        ran.append(name)
        return name

    async def scenario() -> None:
        busy = [asyncio.ensure_future(run_read(read, f"busy-{i}")) for i in range(READ_THREADS)]
        waiting = asyncio.ensure_future(run_read(read, "waiting"))
        loop = asyncio.get_running_loop()
        for _ in busy:  # every reading thread holds a read
            assert await loop.run_in_executor(None, lambda: started.acquire(timeout=10))
        for task in (busy[0], waiting):
            task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)  # the loop delivers both cancellations
        assert waiting.done() and waiting.cancelled()  # it had not started: it never will
        assert not busy[0].done()  # under way: the cancellation waits for it
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await busy[0]
        assert "busy-0" in ran  # it ended before the cancellation went on
        assert await asyncio.gather(*busy[1:]) == [f"busy-{i}" for i in range(1, READ_THREADS)]

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert "waiting" not in ran


def test_an_in_memory_database_is_read_through_its_own_engine() -> None:
    # a second engine would open a second, empty database
    engine = create_db_engine("sqlite://")
    assert reading_engine(engine) is engine
    engine.dispose()
