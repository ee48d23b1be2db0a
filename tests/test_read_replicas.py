"""The API past one server: ``tecnorev serve`` with its connections through PgBouncer in
transaction mode, public reads on a real streaming replica, migrations on the primary's direct
URL (``TECNOREV_MIGRATION_URL``).

* a client that writes and reads back at once sees its write, also with the replica's replay
  paused (its read goes to the primary, told by the position its write handed back), while a
  client that wrote nothing is served by the replica;
* with the replica stopped, the API serves from the primary and ``/ready`` says the replica is
  down; started again, it serves reads again;
* ``/metrics`` shows each replica's lag;
* ``tecnorev db upgrade heads`` through the pooler is refused with the fix; through the
  migration URL it runs, and the replica receives the schema.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tecnorev.core.db import bounded_engine
from tecnorev.testing.core import (
    require_postgres,
    run_tecnorev,
    temporary_postgres_database,
)
from tecnorev.testing.replication import StreamingReplica, or_skip, pgbouncer, streaming_replica

from .serving import MANAGER, Server, bearer, demo_database, start_server, token

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

API = "/api/v1"
WAIT = 30.0  # longest a replica's state may take to show (checked every 0.2 s)


@dataclass
class Topology:
    primary: str  # the primary's direct URL
    pooled: str  # the same database through PgBouncer
    replica: StreamingReplica
    replica_url: str
    server: Server


def _execute(url: str, statement: str, **params: object) -> None:
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement), params)
    finally:
        engine.dispose()


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {WAIT} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    require_postgres()
    with ExitStack() as stack:
        replica = stack.enter_context(or_skip(streaming_replica()))
        primary = stack.enter_context(demo_database())  # made after: replicated too
        # start-up options refused, not ignored: the API must send none through a pooler
        bouncer = stack.enter_context(
            or_skip(pgbouncer(ignore_startup_parameters=("extra_float_digits",)))
        )
        pooled = bouncer.pooled(primary)
        replica_url = replica.database_url(make_url(primary).database or "")
        replica.wait_caught_up(primary, timeout=60)
        server = start_server(
            pooled,
            1,
            tmp_path_factory.mktemp("replicas"),
            TECNOREV_DB_POOLER="transaction",
            TECNOREV_READ_REPLICA_URLS=replica_url,
            TECNOREV_MIGRATION_URL=primary,
            TECNOREV_REPLICA_CHECK_INTERVAL="0.2s",
            # a paused replica falls behind by the clock: however slow the machine, it keeps
            # serving while paused, so what it answers shows where each read went
            TECNOREV_REPLICA_MAX_LAG="10min",
        )
        stack.callback(server.stop)
        yield Topology(primary, pooled, replica, replica_url, server)


def _ready(topology: Topology) -> dict:
    response = httpx.get(topology.server.base + "/ready", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _replica_state(topology: Topology) -> str:
    (state,) = _ready(topology)["read_replicas"]
    return state["state"]


def _product(base: str, product_id: int, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{base}{API}/catalog/products/{product_id}", timeout=10, **kwargs)


def test_reads_go_to_the_replica_and_writes_are_read_back_at_once(topology: Topology) -> None:
    base = topology.server.base
    _wait_for(lambda: _replica_state(topology) == "serving", "the replica serving")
    manager = bearer(token(base, MANAGER))
    topology.replica.pause_replay()
    try:
        # written on the primary behind the API's back: the replica, paused, still has the
        # old name, and a client that wrote nothing is served by it
        _execute(topology.primary, "UPDATE product SET name = 'Renamed' WHERE id = 1")
        assert _product(base, 1).json()["name"] != "Renamed"

        # a client's own write, read back at once through the position it was handed
        with httpx.Client(base_url=base, timeout=10) as client:
            created = client.post(
                f"{API}/catalog/products",
                json={"sku": "RYW-1", "name": "Read your writes", "price": "9.90"},
                headers=manager,
            )
            assert created.status_code == 201, created.text
            position = created.headers["X-Tecnorev-LSN"]
            assert client.cookies.get("tecnorev_lsn") == position
            product_id = created.json()["id"]
            by_cookie = client.get(f"{API}/catalog/products/{product_id}")
            assert by_cookie.status_code == 200, by_cookie.text
            assert by_cookie.json()["name"] == "Read your writes"
            listed = client.get(f"{API}/catalog/products", params={"q": "read your"})
            assert [p["id"] for p in listed.json()["items"]] == [product_id]
        by_header = _product(base, product_id, headers={"X-Tecnorev-LSN": position})
        assert by_header.status_code == 200
        # without it, the replica answers: it has not replayed the product yet
        assert _product(base, product_id).status_code == 404

        # an order placed and read back at once
        customer = bearer(token(base, "ana@example.com"))
        placed = httpx.post(
            f"{base}{API}/sales/orders",
            json={"branch_id": 1, "items": [{"product_id": 1, "quantity": 1}]},
            headers=customer,
            timeout=10,
        )
        assert placed.status_code == 201, placed.text
        order = httpx.get(
            f"{base}{API}/sales/orders/{placed.json()['id']}",
            headers={**customer, "X-Tecnorev-LSN": placed.headers["X-Tecnorev-LSN"]},
            timeout=10,
        )
        assert (order.status_code, order.json()["id"]) == (200, placed.json()["id"])
    finally:
        topology.replica.resume_replay()
    topology.replica.wait_caught_up(topology.primary, timeout=60)
    _wait_for(lambda: _product(base, product_id).status_code == 200, "the replica caught up")


def test_the_replicas_lag_is_in_metrics(topology: Topology) -> None:
    _wait_for(lambda: _replica_state(topology) == "serving", "the replica serving")
    scraped = httpx.get(topology.server.base + "/metrics", timeout=10).text
    name = topology.replica_url.split("@")[-1].split("/")[0]
    assert f'tecnorev_read_replica_serving{{replica="{name}"}} 1.0' in scraped
    assert f'tecnorev_read_replica_lag_seconds{{replica="{name}"}}' in scraped
    assert f'tecnorev_read_replica_lag_bytes{{replica="{name}"}}' in scraped


def test_a_stopped_replica_is_set_aside_and_taken_back(topology: Topology) -> None:
    base = topology.server.base
    topology.replica.stop()
    try:
        _wait_for(lambda: _replica_state(topology) == "down", "/ready saying the replica is down")
        (state,) = _ready(topology)["read_replicas"]
        assert state["problem"].startswith("unreachable")
        for _ in range(5):  # every read served, from the primary
            listed = httpx.get(f"{base}{API}/catalog/products", timeout=10)
            assert listed.status_code == 200, listed.text
            assert _product(base, 1).status_code == 200
    finally:
        topology.replica.start()
    _wait_for(lambda: _replica_state(topology) == "serving", "the replica serving again")


def test_migrations_refuse_the_pooler_and_run_on_the_migration_url(
    topology: Topology, tmp_path: Path
) -> None:
    with temporary_postgres_database() as primary:
        with or_skip(pgbouncer()) as bouncer:
            pooled = bouncer.pooled(primary)
            refused = run_tecnorev("db", "upgrade", "heads", url=pooled, cwd=tmp_path)
            assert refused.returncode == 3, refused.stdout + refused.stderr
            assert "goes through a connection pooler in transaction mode" in refused.stderr
            assert "Set TECNOREV_MIGRATION_URL to the PostgreSQL server directly" in (
                refused.stderr
            )
            migrated = run_tecnorev(
                "db",
                "upgrade",
                "heads",
                url=pooled,
                env={"TECNOREV_MIGRATION_URL": primary},
                cwd=tmp_path,
            )
            assert migrated.returncode == 0, migrated.stderr
        topology.replica.wait_caught_up(primary, timeout=60)
        replica = bounded_engine(
            topology.replica.database_url(make_url(primary).database or ""),
            poolclass=sa.pool.NullPool,
        )
        try:
            tables = set(sa.inspect(replica).get_table_names())
        finally:
            replica.dispose()
        assert {"product", "order", "stock_entry", "alembic_version"} <= tables


def test_a_replica_too_small_for_the_workers_pools_is_said_with_the_numbers(
    topology: Topology, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tecnorev.api.pools import check_replica_budget, server_limits

    monkeypatch.setenv("TECNOREV_WORKERS", "4")
    limits = server_limits(topology.replica_url)
    assert limits is not None
    each = limits.budget(reserve=10, workers=4)  # the default reserve
    with caplog.at_level("WARNING", logger="tecnorev.api"):
        check_replica_budget(topology.replica_url, each)
        assert not caplog.records
        check_replica_budget(topology.replica_url, each + 1)
    (record,) = caplog.records
    message = record.getMessage()
    assert f"4 workers may open {4 * (each + 1)} connections, more than the {4 * each}" in message
    assert f"max_connections={limits.max_connections} leaves" in message
    assert "TECNOREV_DB_CONNECTION_RESERVE=10" in message
