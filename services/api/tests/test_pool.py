"""Each worker keeps as many database connections open as it has threads serving routes:
a steady load never opens and closes connections; the pools of all workers fit the
server's ``max_connections``."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import sqlalchemy as sa

from tecnorev.api import create_app
from tecnorev.api.pools import MAX_POOL, PoolPlan, plan_pools
from tecnorev.core.errors import ConfigError, DatabaseUnavailable
from tecnorev.testing.core import migrate, run_together


def busy_together(engine: sa.Engine, clients: int) -> set[int]:
    """``clients`` threads each hold a connection at the same moment, then return it; the
    PostgreSQL backends that served them."""

    def client(_i: int, start: Callable[[], object]) -> int:
        with engine.connect() as connection:
            backend = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            start()  # every connection is held at this point
            return backend

    return set(run_together(clients, client))


async def route_threads() -> int:
    return int(anyio.to_thread.current_default_thread_limiter().total_tokens)


def test_a_steady_load_keeps_its_connections(postgres_url):
    migrate(postgres_url, "heads")
    app = create_app(database_url=postgres_url)
    engine = app.state.engine
    try:
        # three bursts as wide as the threads serving routes, served by the same backends
        width = anyio.run(route_threads)
        backends = [busy_together(engine, width) for _ in range(3)]
        assert len(backends[0]) == width
        assert backends[0] == backends[1] == backends[2]
    finally:
        engine.dispose()
        app.state.read_engine.dispose()


def test_the_pool_size_is_a_setting(database_url, monkeypatch):
    monkeypatch.setenv("TECNOREV_DB_POOL_SIZE", "7")
    app = create_app(database_url=database_url)
    assert app.state.engine.pool.size() == 7
    assert app.state.read_engine.pool.size() == 7
    for bad in ("0", "lots", "-1", "²"):
        monkeypatch.setenv("TECNOREV_DB_POOL_SIZE", bad)
        with pytest.raises(ConfigError, match="TECNOREV_DB_POOL_SIZE"):
            create_app(database_url=database_url)


def server_budget(url: str, reserve: int = 10) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        most, reserved = connection.exec_driver_sql(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int"
        ).one()
    engine.dispose()
    return most - reserved - reserve


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_the_pools_of_every_worker_fit_the_servers_connections(postgres_url, monkeypatch, workers):
    monkeypatch.setenv("TECNOREV_WORKERS", str(workers))
    plan = plan_pools(postgres_url)
    assert workers * plan.per_worker <= server_budget(postgres_url)
    assert plan.write <= MAX_POOL and plan.read <= MAX_POOL
    assert plan.write >= plan.read
    assert "max_connections=" in plan.reason
    app = create_app(database_url=postgres_url)
    assert app.state.engine.pool.size() == plan.write
    assert app.state.read_engine.pool.size() == plan.read


def test_more_workers_than_the_server_can_serve_are_refused_with_the_numbers(
    postgres_url, monkeypatch
):
    monkeypatch.setenv("TECNOREV_WORKERS", str(server_budget(postgres_url)))
    with pytest.raises(ConfigError, match=r"max_connections=\d+.*TECNOREV_WORKERS"):
        plan_pools(postgres_url)


def test_an_explicit_size_beyond_the_budget_is_kept_with_a_warning(
    postgres_url, monkeypatch, caplog
):
    monkeypatch.setenv("TECNOREV_WORKERS", "4")
    monkeypatch.setenv("TECNOREV_DB_POOL_SIZE", "30")
    plan = plan_pools(postgres_url)
    assert (plan.write, plan.read) == (30, 30)
    assert "4 workers may open 240 connections" in caplog.text


def test_sqlite_gets_the_widest_pools_and_an_unreachable_server_a_default_servers(
    tmp_path, caplog, monkeypatch
):
    assert plan_pools(f"sqlite:///{tmp_path / 'shop.db'}") == PoolPlan(
        MAX_POOL, MAX_POOL, "default"
    )
    unreachable = "postgresql+psycopg2://postgres@127.0.0.1:1/shop"
    assert plan_pools(unreachable).write == MAX_POOL  # as for PostgreSQL's defaults
    assert "unreachable" in caplog.text
    with pytest.raises(DatabaseUnavailable):
        plan_pools(unreachable, strict=True)
    monkeypatch.setenv("TECNOREV_WORKERS", "2")
    assert 2 * plan_pools(unreachable).per_worker <= 100 - 3 - 10
