"""Every wait inside a request is bounded and answered with a documented error, never a 500:
a row held past the lock timeout, a statement past its timeout, no free connection, an
SQLite file locked past its busy timeout.  A stopping server cancels what still runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tecnorev.core.db import Checkouts, RequestTimeouts, create_db_engine
from tecnorev.core.errors import ConfigError
from tecnorev.core.web import SessionDep, make_app
from tecnorev.testing.core import require_postgres

metadata = sa.MetaData()
counter = sa.Table(
    "counter",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
router = APIRouter()


@router.post("/counters/{counter_id}/bump")
def bump(counter_id: int, session: SessionDep) -> dict[str, Any]:
    value = session.execute(
        sa.update(counter)
        .where(counter.c.id == counter_id)
        .values(value=counter.c.value + 1)
        .returning(counter.c.value)
    ).scalar_one()
    return {"value": value}


@router.get("/slow")
def slow(session: SessionDep) -> dict[str, str]:
    session.execute(sa.text("SELECT pg_sleep(5)"))
    return {"status": "slept"}


@router.post("/idle")
def idle(session: SessionDep) -> dict[str, str]:
    session.execute(sa.text("SELECT 1"))
    time.sleep(1.5)  # a stuck request, holding its transaction open
    session.execute(sa.text("SELECT 1"))
    return {"status": "woke"}


def short(**overrides: float) -> RequestTimeouts:
    return RequestTimeouts(
        **{"lock": 0.3, "statement": 2.0, "idle_in_transaction": 30.0, **overrides}
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(database_url, timeouts=short(), pool_size=2, max_overflow=0)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.insert(counter).values(id=1, value=0))
    try:
        yield engine
    finally:
        engine.dispose()


def client_for(engine: sa.Engine) -> TestClient:
    return TestClient(make_app([("t", router)], engine=engine), raise_server_exceptions=False)


def holding_row(url: str) -> tuple[sa.Engine, sa.Connection]:
    other = create_db_engine(url, poolclass=sa.pool.NullPool)
    connection = other.connect()
    connection.execute(sa.update(counter).where(counter.c.id == 1).values(value=100))
    return other, connection


def test_a_row_held_past_the_lock_timeout_is_a_409_resource_busy(engine, database_url, backend):
    other, holder = holding_row(database_url)
    try:
        with client_for(engine) as client:
            response = client.post("/api/v1/counters/1/bump")
    finally:
        holder.rollback()
        holder.close()
        other.dispose()
    if backend == "postgresql":
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "resource_busy"
    else:  # SQLite locks the whole file: the server is busy, not one record
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "database_busy"
    assert response.headers["retry-after"] == "1"
    with engine.connect() as connection:
        assert connection.execute(sa.select(counter.c.value)).scalar_one() == 0


def test_the_request_timeouts_are_the_connections_settings(postgres_url):
    engine = create_db_engine(postgres_url, timeouts=short(lock=1.5))
    try:
        with engine.connect() as connection:
            shown = [
                connection.exec_driver_sql(f"SHOW {name}").scalar_one()
                for name in (
                    "lock_timeout",
                    "statement_timeout",
                    "idle_in_transaction_session_timeout",
                )
            ]
            name = connection.exec_driver_sql("SHOW application_name").scalar_one()
    finally:
        engine.dispose()
    assert shown == ["1500ms", "2s", "30s"]
    assert name == "tecnorev"


def test_a_statement_past_its_timeout_is_a_503(postgres_url):
    engine = create_db_engine(postgres_url, timeouts=short(statement=0.3))
    try:
        with client_for(engine) as client:
            response = client.get("/api/v1/slow")
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_timeout"
    assert response.headers["retry-after"] == "5"


def test_a_transaction_the_server_ended_for_idling_is_a_503(postgres_url):
    engine = create_db_engine(postgres_url, timeouts=short(idle_in_transaction=0.3))
    try:
        with client_for(engine) as client:
            response = client.post("/api/v1/idle")
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_no_free_connection_within_the_pool_timeout_is_a_503_overloaded(database_url):
    engine = create_db_engine(database_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    taken = engine.connect()
    taken.exec_driver_sql("SELECT 1")
    try:
        with client_for(engine) as client:
            response = client.post("/api/v1/counters/1/bump")
    finally:
        taken.close()
        engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "overloaded"
    assert response.headers["retry-after"] == "1"


def test_cancelling_the_checked_out_connections_ends_their_waits(postgres_url):
    require_postgres()
    engine = create_db_engine(postgres_url, pool_size=3, max_overflow=0)
    checkouts = Checkouts(engine)
    started = threading.Barrier(3, timeout=30)
    errors: list[BaseException] = []

    def sleeper() -> None:
        try:
            with engine.connect() as connection:
                started.wait()
                connection.exec_driver_sql("SELECT pg_sleep(60)")
        except sa.exc.OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sleeper) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        deadline = threading.Event()
        while len(checkouts) < 2 and not deadline.wait(0.05):
            pass
        # the statements may not have reached the server yet: cancel until both end
        for _ in range(100):
            checkouts.cancel()
            if checkouts.wait_returned(0.1):
                break
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
        assert len(errors) == 2
        assert all(getattr(e.orig, "pgcode", None) == "57014" for e in errors)
        assert len(checkouts) == 0
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TECNOREV_REQUEST_LOCK_TIMEOUT", "0"),
        ("TECNOREV_REQUEST_STATEMENT_TIMEOUT", "forever"),
        ("TECNOREV_IDLE_IN_TRANSACTION_TIMEOUT", "-5s"),
    ],
)
def test_a_bad_timeout_setting_names_itself(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        RequestTimeouts.from_env()


def test_timeouts_read_durations(monkeypatch):
    monkeypatch.setenv("TECNOREV_REQUEST_LOCK_TIMEOUT", "500ms")
    monkeypatch.setenv("TECNOREV_REQUEST_STATEMENT_TIMEOUT", "1min")
    monkeypatch.setenv("TECNOREV_IDLE_IN_TRANSACTION_TIMEOUT", "45")
    assert RequestTimeouts.from_env() == RequestTimeouts(
        lock=0.5, statement=60, idle_in_transaction=45
    )


@pytest.mark.parametrize("end", ["commit", "rollback", "close", "invalidate"])
def test_the_sqlite_writer_queue_is_released_however_a_transaction_ends(tmp_path, end):
    from tecnorev.core.db import _writer_queue, create_db_engine

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    engine = create_db_engine(url)
    try:
        connection = engine.connect()
        connection.exec_driver_sql("SELECT 1")  # begins: the queue is taken
        queue = _writer_queue(url)
        assert not queue.acquire(timeout=0)
        getattr(connection, end)()  # invalidate: the pool takes the connection back
        if end != "invalidate":
            connection.close()
        assert queue.acquire(timeout=0)  # free again, for the next transaction
        queue.release()
    finally:
        engine.dispose()
