"""Helpers and pytest fixtures for testing Tecno Rev modules against real databases.

A package's ``tests/conftest.py`` imports the fixtures it wants::

    from tecnorev.testing.core import database_url, backend  # noqa: F401

PostgreSQL tests create a throwaway database on the server named by ``TEST_DATABASE_URL``
(an admin URL; default: the local server) and drop it afterwards.  When the server cannot be
reached they are skipped, unless ``TECNOREV_REQUIRE_POSTGRES=1`` (set on CI) makes that a
failure.

:func:`run_together` races threads for the concurrency tests, with every wait bounded.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import traceback
from argparse import Namespace
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import Session

from tecnorev.core.db import bounded_engine
from tecnorev.core.settings import TestingSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from tecnorev.core.registry import Registry

BACKENDS = ("sqlite", "postgresql")
T = TypeVar("T")


def admin_url() -> str:
    return TestingSettings().test_database_url


def postgres_required() -> bool:
    return TestingSettings().require_postgres


def postgres_reachable() -> bool:
    engine = bounded_engine(admin_url(), poolclass=sa.pool.NullPool)
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (even with connections left open)."""
    name = f"tecnorev_test_{secrets.token_hex(6)}"
    admin = bounded_engine(admin_url(), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(admin_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def require_postgres() -> None:
    if postgres_reachable():
        return
    message = f"PostgreSQL not reachable at {sa.make_url(admin_url()).render_as_string()}"
    if postgres_required():
        pytest.fail(message + " (TECNOREV_REQUIRE_POSTGRES is set)")
    pytest.skip(message)


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    require_postgres()
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database on each backend."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    with fresh_database("postgresql", tmp_path) as url:
        yield url


def alembic_config(url: str) -> Config:
    """A Config for ``url`` seeing the installed modules (the packaged environment)."""
    from tecnorev.migrate.cli import make_config

    config = make_config(url=url)
    config.set_main_option("revision_environment", "true")
    return config


def migrate(url: str, target: str = "heads") -> None:
    command.upgrade(alembic_config(url), target)


def downgrade(url: str, target: str, *, cascade: bool = False) -> None:
    config = alembic_config(url)
    if cascade:
        config.cmd_opts = _x_options("cascade=true")
    command.downgrade(config, target)


def _x_options(*pairs: str) -> Namespace:

    return Namespace(x=list(pairs))


def run_tecnorev(
    *args: str,
    url: str | None = None,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run the ``tecnorev`` command line in a child process, as a user would."""
    child_env = {**os.environ, **(env or {})}
    if url is not None:
        child_env["DATABASE_URL"] = url
    child_env.pop("TECNOREV_DEBUG", None)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tecnorev.core.cli import main; sys.exit(main())",
            *args,
        ],
        cwd=cwd,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def schema_objects(url: str) -> dict[str, set[str]]:
    """Tables, indexes, sequences and (PostgreSQL) types present, excluding the migration
    bookkeeping tables."""
    bookkeeping = {
        "alembic_version",
        "tecnorev_migration_log",
        "tecnorev_forgotten_revision",
        "tecnorev_revision_source",
        "tecnorev_replica",
        "tecnorev_backfill",
    }
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            tables = set(inspector.get_table_names()) - bookkeeping
            indexes = {f"{t}.{ix['name']}" for t in tables for ix in inspector.get_indexes(t)}
            found = {"tables": tables, "indexes": indexes, "sequences": set(), "types": set()}
            if conn.dialect.name == "postgresql":
                found["sequences"] = {
                    s
                    for s in inspector.get_sequence_names()
                    if not s.startswith("tecnorev_migration_log")
                }
                found["types"] = set(
                    conn.execute(
                        sa.text(
                            "SELECT t.typname FROM pg_type t JOIN pg_namespace n "
                            "ON n.oid = t.typnamespace WHERE n.nspname = 'public' "
                            "AND t.typtype IN ('e', 'd', 'c') AND t.typrelid = 0"
                        )
                    ).scalars()
                )
            return found
    finally:
        engine.dispose()


def recorded_revisions(url: str) -> set[str]:
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return set()
            return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


def assert_module_migrates(module: str, url: str) -> None:
    """The module's branch applies with its dependencies, matches its models, and reverts
    without touching what it depends on."""
    from tecnorev.core.registry import get_registry

    registry = get_registry()
    migrate(url, "heads")
    command.check(alembic_config(url))
    mine = registry.tables_of(module)
    assert mine, f"module {module!r} defines no table"
    assert mine <= schema_objects(url)["tables"]
    dependents = registry.dependents(module)
    downgrade(url, f"{module}@base", cascade=bool(dependents))
    left = schema_objects(url)["tables"]
    assert not mine & left, f"left behind: {mine & left}"
    for dep in registry.dependencies(module):
        assert registry.tables_of(dep) <= left
    migrate(url, "heads")
    command.check(alembic_config(url))


@contextmanager
def migrated_session(url: str, target: str) -> Iterator[Session]:
    """A session on ``url`` after migrating it to ``target`` (e.g. ``"catalog@head"``)."""
    from tecnorev.core.db import create_db_engine

    migrate(url, target)
    engine = create_db_engine(url)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def api_app(url: str, registry: Registry | None = None) -> FastAPI:
    """The installed modules' routers (or ``registry``'s) on ``url``, through the same
    error handling and unit of work the service uses, without the service."""
    from tecnorev.core.db import create_db_engine
    from tecnorev.core.registry import get_registry
    from tecnorev.core.web import make_app
    from tecnorev.core.web.composition import module_routers

    registry = registry or get_registry()
    registry.load_models()
    return make_app(module_routers(registry), engine=create_db_engine(url), registry=registry)


@contextmanager
def api_client(url: str, target: str = "heads") -> Iterator[TestClient]:
    """A client of :func:`api_app` on ``url`` migrated to ``target``."""
    from fastapi.testclient import TestClient

    migrate(url, target)
    app = api_app(url)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        for engine in (app.state.engine, app.state.read_engine):
            if engine is not None:
                engine.dispose()


def installed_revisions() -> dict[str, tuple[str, ...]]:
    """Every installed revision -> what must be applied before it (its down revisions and
    ``depends_on``), from the migration files."""
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.cli import make_config

    scripts = ScriptDirectory.from_config(make_config())
    return {
        script.revision: tuple(script._all_down_revisions) + tuple(script._resolved_dependencies)
        for script in scripts.walk_revisions()
    }


def module_heads() -> dict[str, str]:
    """Each installed module's head revision (one per module)."""
    from alembic.script import ScriptDirectory

    from tecnorev.core.registry import get_registry
    from tecnorev.migrate.cli import make_config

    scripts = ScriptDirectory.from_config(make_config())
    return {name: scripts.get_revision(f"{name}@head").revision for name in get_registry().names}


def metric_samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, read with prometheus-client's own parser:
    ``(name, sorted label pairs) -> value`` (see :func:`metric`)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def metric(
    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    missing: float | None = None,
    **labels: str,
) -> float:
    """One sample's value; a sample that is not there fails, unless ``missing`` says what it
    stands for (0 for a labelled counter never incremented)."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        assert missing is not None, f"no sample {name}{labels} in the exposition"
        return missing
    return samples[key]


def run_together(
    threads: int, work: Callable[[int, Callable[[], object]], T], *, timeout: float = 60
) -> list[T]:
    """Run ``work(i, start)`` for each ``i`` in ``range(threads)``, each in a thread of its own,
    and return what each returned, in order.

    ``work`` calls ``start()`` once it is ready to race (connected, say): the call returns when
    every thread has made it, so the threads leave the start line together.  The threads get
    ``timeout`` seconds in all.  A thread that fails, before the start line or after, releases
    the others waiting there; once every thread has ended, the first failure is raised here as
    it was raised in its thread (not the BrokenBarrierError of those it released).  A thread
    still running at the deadline is a TimeoutError showing where it is stuck.
    """
    start_line = threading.Barrier(threads, timeout=timeout)
    results: list[Any] = [None] * threads
    failures: list[tuple[int, BaseException]] = []  # in the order they happened

    def run(i: int) -> None:
        started = False

        def start() -> None:
            nonlocal started
            start_line.wait()
            started = True

        try:
            results[i] = work(i, start)
        except BaseException as exc:
            failures.append((i, exc))
            if not started:  # it will never arrive: nobody waits for it
                start_line.abort()

    racers = [
        threading.Thread(target=run, args=(i,), name=f"run_together-{i}", daemon=True)
        for i in range(threads)
    ]
    for racer in racers:
        racer.start()
    _join(racers, timeout)
    if any(racer.is_alive() for racer in racers):
        start_line.abort()  # release those at the start line, so only the stuck ones remain
        _join(racers, 1.0)

    caused = [f for f in failures if not isinstance(f[1], threading.BrokenBarrierError)]
    if caused:
        i, error = caused[0]
        error.add_note(f"(raised in thread {i} of the {threads} run together)")
        raise error
    stuck = [racer for racer in racers if racer.is_alive()]
    if stuck:
        frames = sys._current_frames()
        stacks = "".join(
            f"\n{racer.name}:\n" + "".join(traceback.format_stack(frames[racer.ident]))
            for racer in stuck
            if racer.ident in frames
        )
        raise TimeoutError(
            f"{len(stuck)} of {threads} threads still running after {timeout} s:{stacks}"
        )
    if failures:  # the start line timed out on a thread that arrived too late
        raise failures[0][1]
    return results


def _join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
