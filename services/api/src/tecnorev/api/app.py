"""``create_app()``: every installed module's router under ``/api/v1``, health and readiness."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from tecnorev.core.db import check_connection, create_db_engine
from tecnorev.core.errors import ConfigError, DatabaseUnavailable
from tecnorev.core.migration.readiness import ReadinessCheck, behind
from tecnorev.core.registry import Registry, get_registry
from tecnorev.core.settings import get_settings, signing_key, whole_number
from tecnorev.core.web import make_app
from tecnorev.core.web.composition import module_routers
from tecnorev.core.web.session import read_threads, reading_engine

log = logging.getLogger("tecnorev.api")

VERSION = "0.1.0"
# Connections each engine keeps open per worker: as many as the threads serving sync routes
# (anyio's default: 40), so they never queue for one.  A smaller pool's overflow connections
# are closed at each return and opened again by the next request: under steady load a
# PostgreSQL backend was started and dropped for every few orders, a third of a core.
POOL_SIZE = 40
POOL_OVERFLOW = 10
# No ping before each checkout (a round trip per request): a connection the server dropped
# fails one request with a 503, and SQLAlchemy then replaces every pooled connection.
POOL_RECYCLE_SECONDS = 1800


def pool_size() -> int:
    """Connections per pool and worker: ``TECNOREV_DB_POOL_SIZE``, else ``POOL_SIZE``."""
    return whole_number("TECNOREV_DB_POOL_SIZE", POOL_SIZE)


def create_app(*, database_url: str | None = None, registry: Registry | None = None) -> FastAPI:
    """The service for the installed modules (or ``registry``) on ``database_url``
    (default: DATABASE_URL, from the environment or ``.env``)."""
    settings = get_settings()
    signing_key(settings)  # production refuses a missing or weak key before serving anything
    read_threads()  # a bad TECNOREV_READ_THREADS stops start-up, not a request
    size = pool_size()
    registry = registry or get_registry()
    registry.load_models()
    engine = create_db_engine(
        database_url,
        pool_size=size,
        max_overflow=POOL_OVERFLOW,
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
    )
    # public reads (ReadSessionDep) run in autocommit on a pool of their own
    read_engine = reading_engine(
        engine,
        pool_size=size,
        max_overflow=POOL_OVERFLOW,
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
    )
    readiness = ReadinessCheck(registry)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _check_schema(engine, readiness, production=settings.is_production)
        yield
        engine.dispose()
        read_engine.dispose()

    tags = [{"name": m.name, "description": m.description} for m in registry.modules]
    app = make_app(
        module_routers(registry),
        engine=engine,
        read_engine=read_engine,
        registry=registry,
        title="Tecno Rev",
        version=VERSION,
        tags=[{"name": "service", "description": "health and readiness"}, *tags],
        lifespan=lifespan,
    )

    @app.get("/health", tags=["service"], summary="the process is up")
    def health() -> dict[str, object]:
        return {"status": "ok", "modules": registry.names}

    @app.get(
        "/ready",
        tags=["service"],
        summary="the database is reachable and every installed module's migrations are applied",
        responses={503: {"description": "not ready: the body says why"}},
    )
    def ready() -> JSONResponse:
        try:
            report = readiness.report(engine)
        except DatabaseUnavailable as exc:
            log.warning("not ready: %s", exc)
            body = {"status": "not_ready", "database": "unreachable", "behind": {}}
            return JSONResponse(body, status_code=503)
        late = behind(report)
        body = {
            "status": "not_ready" if late else "ready",
            "database": "ok",
            "behind": late,
            "modules": {m.module: m.state.value for m in report.modules},
        }
        return JSONResponse(body, status_code=503 if late else 200)

    return app


def check_ready_to_serve(
    *, database_url: str | None = None, registry: Registry | None = None
) -> None:
    """Refuse, as production start-up does, a database that is unreachable or lacks a
    module's migrations.  ``tecnorev serve`` asks before starting any worker, so the
    operator reads one line instead of each worker's start-up traceback."""
    registry = registry or get_registry()
    engine = create_db_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        _check_schema(engine, ReadinessCheck(registry), production=True)
    finally:
        engine.dispose()


def _check_schema(engine: sa.Engine, readiness: ReadinessCheck, *, production: bool) -> None:
    """Say at start-up what the database lacks; production refuses to serve with it."""
    try:
        check_connection(engine)
        late = behind(readiness.report(engine))
    except DatabaseUnavailable as exc:
        if production:
            raise
        log.warning("%s; /ready answers 503 until it is reachable", exc)
        return
    if not late:
        return
    listing = "; ".join(f"{name}: {', '.join(revs)}" for name, revs in late.items())
    message = (
        f"migrations pending for {', '.join(late)} ({listing}); run 'tecnorev db upgrade heads'"
    )
    if production:
        raise ConfigError(f"refusing to serve: {message}")
    log.warning(message)
