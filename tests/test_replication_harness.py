"""The replica and pooler harness (tecnorev.testing.replication) on the test server: a streaming
replica that sees what the primary committed, and not while its replay is paused or it is
stopped; a pgbouncer in transaction mode that SQLAlchemy with psycopg2 runs transactions
through.

Skipped, with what to change, where the machine cannot provide them: the primary must accept
replication connections from 127.0.0.1 (a ``host replication`` line in its pg_hba.conf), and
pgbouncer must be installed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tecnorev.core.db import bounded_engine
from tecnorev.testing.core import admin_url, require_postgres, temporary_postgres_database
from tecnorev.testing.replication import (
    HarnessError,
    Lsn,
    StreamingReplica,
    or_skip,
    pgbouncer,
    streaming_replica,
)

pytestmark = pytest.mark.postgres


@pytest.fixture
def replica() -> Iterator[StreamingReplica]:
    require_postgres()
    with or_skip(streaming_replica()) as running:
        yield running


@pytest.fixture
def primary_database() -> Iterator[str]:
    """A throwaway database on the primary (made after the replica: it is replicated too)."""
    require_postgres()
    with temporary_postgres_database() as url:
        yield url


def execute(url: str, *statements: str) -> None:
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def notes(url: str) -> list[str]:
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text("SELECT note FROM probe ORDER BY id")).scalars())
    finally:
        engine.dispose()


def primary_lsn(url: str) -> Lsn:
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return Lsn.parse(
                connection.execute(sa.text("SELECT pg_current_wal_lsn()::text")).scalar_one()
            )
    finally:
        engine.dispose()


def wait_until(probe, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


def test_a_replica_follows_the_primary_paused_and_stopped(replica, primary_database):
    on_replica = replica.database_url(sa.make_url(primary_database).database)
    execute(
        primary_database,
        "CREATE TABLE probe (id serial PRIMARY KEY, note text NOT NULL)",
        "INSERT INTO probe (note) VALUES ('first')",
    )
    replica.wait_caught_up(timeout=30)
    assert notes(on_replica) == ["first"]
    with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
        execute(on_replica, "INSERT INTO probe (note) VALUES ('on the replica')")

    # Paused: the WAL still arrives, but is not applied, so queries do not see it.
    replica.pause_replay()
    execute(primary_database, "INSERT INTO probe (note) VALUES ('while paused')")
    written = primary_lsn(primary_database)
    wait_until(lambda: replica.receive_lsn() >= written, 30, "the replica to receive the insert")
    assert notes(on_replica) == ["first"]
    assert replica.replay_lsn() < written
    with pytest.raises(HarnessError, match="replay is paused"):
        replica.wait_caught_up(timeout=5)
    replica.resume_replay()
    assert replica.wait_caught_up(timeout=30) >= written
    assert notes(on_replica) == ["first", "while paused"]

    # Stopped: nothing to connect to; started again, it catches up through its slot.
    replica.stop()
    assert not replica.running()
    with pytest.raises(sa.exc.OperationalError):
        notes(on_replica)
    execute(primary_database, "INSERT INTO probe (note) VALUES ('while stopped')")
    replica.start()
    replica.wait_caught_up(timeout=30)
    assert notes(on_replica) == ["first", "while paused", "while stopped"]


def test_transactions_through_pgbouncer_in_transaction_mode(primary_database):
    server = sa.make_url(admin_url())
    # One server connection: two clients can only both be served by sharing it, per transaction.
    with or_skip(
        pgbouncer(
            server.host or "127.0.0.1",
            server.port or 5432,
            "transaction",
            user=server.username or "postgres",
            password=server.password or "",
            default_pool_size=1,
        )
    ) as bouncer:
        pooled = bouncer.url_for(sa.make_url(primary_database).database)
        engine = bounded_engine(pooled, pool_size=2, max_overflow=0)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("CREATE TABLE pooled (id int PRIMARY KEY)"))
                connection.execute(sa.text("INSERT INTO pooled VALUES (1), (2)"))
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
                connection.execute(sa.text("INSERT INTO pooled VALUES (3)"))
                connection.execute(sa.text("INSERT INTO pooled VALUES (1)"))
            with engine.connect() as first, engine.connect() as second:
                pids = []
                for client in (first, second, first):
                    pids.append(client.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
                    client.commit()  # its server connection goes back to the pool
                assert len(set(pids)) == 1, pids
            with engine.connect() as connection:
                assert connection.execute(
                    sa.text("SELECT array_agg(id ORDER BY id) FROM pooled")
                ).scalar_one() == [1, 2]
        finally:
            engine.dispose()
