"""Each worker keeps as many database connections open as it has threads serving routes:
a steady load never opens and closes connections."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import anyio
import pytest
import sqlalchemy as sa

from tecnorev.api import create_app
from tecnorev.core.errors import ConfigError
from tecnorev.core.testing import migrate


def busy_together(engine: sa.Engine, clients: int) -> set[int]:
    """``clients`` threads each hold a connection at the same moment, then return it; the
    PostgreSQL backends that served them."""
    barrier = Barrier(clients)

    def client() -> int:
        with engine.connect() as connection:
            backend = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            barrier.wait(timeout=30)
            return backend

    with ThreadPoolExecutor(clients) as threads:
        return {future.result() for future in [threads.submit(client) for _ in range(clients)]}


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
