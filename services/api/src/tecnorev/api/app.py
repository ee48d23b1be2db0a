"""``create_app()``: every installed module's router under ``/api/v1``, health and readiness."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from tecnorev.api import tracing
from tecnorev.api.observability import (
    MigrationState,
    OutboxBacklog,
    installed_versions,
    token_matches,
)
from tecnorev.api.pools import check_replica_budget, plan_pools, pool_timeout
from tecnorev.api.settings import ApiSettings
from tecnorev.core import metrics
from tecnorev.core.db import (
    Checkouts,
    RequestTimeouts,
    check_connection,
    check_pooled_timeouts,
    create_db_engine,
)
from tecnorev.core.direct import prepare_on
from tecnorev.core.errors import ConfigError, DatabaseUnavailable, DiscoveryError
from tecnorev.core.outbox.dispatch import BackgroundDispatcher, Dispatcher
from tecnorev.core.outbox.settings import OutboxSettings
from tecnorev.core.registry import Registry, get_registry
from tecnorev.core.settings import CoreSettings, get_settings, signing_key
from tecnorev.core.settings_schema import validate_settings
from tecnorev.core.web import make_app
from tecnorev.core.web.admission import AdmissionLimits
from tecnorev.core.web.composition import module_background, module_routers
from tecnorev.core.web.errors import error_response
from tecnorev.core.web.loop_reads import loop_reading
from tecnorev.core.web.read_replicas import HandOutPosition, ReadRouter, replica_name
from tecnorev.core.web.session import read_threads, reading_engine
from tecnorev.migrate import compatibility
from tecnorev.migrate.errors import DatabaseUnavailable as SchemaUnreachable
from tecnorev.migrate.modules import Registry as EngineRegistry
from tecnorev.migrate.readiness import ReadinessCheck, behind
from tecnorev.migrate.replicas import Reporter, code_heads

log = logging.getLogger("tecnorev.api")

VERSION = installed_versions()["distributions"].get("tecnorev-api", "0+unknown")
# No ping before each checkout (a round trip per request): a connection the server dropped
# fails one request with a 503, and SQLAlchemy then replaces every pooled connection.
POOL_RECYCLE_SECONDS = 1800
SHUTDOWN_CANCEL_WAIT = 5.0


def create_app(*, database_url: str | None = None, registry: Registry | None = None) -> FastAPI:
    """The service for the installed modules (or ``registry``) on ``database_url``
    (default: DATABASE_URL, from the environment or ``.env``)."""
    settings = get_settings()
    signing_key(settings)  # production refuses a missing or weak key before serving anything
    timeouts, waiting, ready_timeout = check_worker_settings()
    pools = plan_pools(database_url)
    admission = AdmissionLimits.from_env(pools.write)
    registry = registry or get_registry()
    check_compatible(registry)
    registry.load_models()
    options: dict[str, Any] = {
        "timeouts": timeouts,
        "max_overflow": 0,
        "pool_timeout": waiting,
        "pool_pre_ping": False,
        "pool_recycle": POOL_RECYCLE_SECONDS,
    }
    engine = create_db_engine(database_url, pool_size=pools.write, **options)
    # public reads (ReadSessionDep) run in autocommit on a pool of their own
    read_engine = reading_engine(engine, pool_size=pools.read, **options)
    # /ready has a connection and a thread of its own: a busy or stuck application cannot
    # delay it, nor can a flood of probes take anything from the application
    probe_timeouts = RequestTimeouts(ready_timeout, ready_timeout, ready_timeout)
    probe_engine = create_db_engine(
        database_url,
        timeouts=probe_timeouts,
        pool_size=1,
        max_overflow=0,
        pool_timeout=ready_timeout,
    )
    # scrapes read the migration state and the outbox on a connection of their own: a slow
    # one cannot hold /ready's
    scrape_engine = create_db_engine(
        database_url,
        timeouts=probe_timeouts,
        pool_size=1,
        max_overflow=0,
        pool_timeout=ready_timeout,
    )
    checkouts = [Checkouts(e) for e in {engine, read_engine}]
    tracer = tracing.tracer_provider(ApiSettings().tracing)
    tracing.trace_statements(tracer, {engine, read_engine})
    metrics.watch_pool(engine, "write")
    if read_engine is not engine:
        metrics.watch_pool(read_engine, "read")
    router = _read_router(settings, engine, read_engine, pools.read, options)
    readiness = ReadinessCheck(EngineRegistry.of(registry))
    reporter = _replica_reporter(database_url, probe_timeouts, readiness)
    dispatcher = _dispatcher(database_url, timeouts, registry)
    # the installed modules' own (auth's caller cache, say), on the primary's two engines
    background = module_background(registry, list(dict.fromkeys((engine, read_engine))))

    async def start() -> None:
        log.info(
            "pools: %d writing + %d reading connections (%s); %d requests in flight, "
            "%d waiting at most %.1fs",
            pools.write, pools.read, pools.reason,
            admission.limit, admission.backlog, admission.wait,
        )  # fmt: skip
        await anyio.to_thread.run_sync(
            lambda: _check_schema(engine, readiness, production=settings.is_production)
        )
        await anyio.to_thread.run_sync(check_pooled_timeouts, engine)
        if reporter is not None:
            await anyio.to_thread.run_sync(reporter.start)
        if router is not None:
            await anyio.to_thread.run_sync(router.start)
        if dispatcher is not None:
            dispatcher.start()
        for work in background:
            await anyio.to_thread.run_sync(work.start)

    async def stop() -> None:
        for work in reversed(background):
            await anyio.to_thread.run_sync(work.stop)
        if router is not None:
            await anyio.to_thread.run_sync(router.stop)
        if dispatcher is not None:
            await anyio.to_thread.run_sync(dispatcher.stop)
        if reporter is not None:
            await anyio.to_thread.run_sync(reporter.stop)
        # Past the server's grace period: what still runs is cancelled in the database, so
        # its thread returns, its transaction rolls back and its connection comes home.
        await anyio.to_thread.run_sync(_stop_statements, checkouts)
        for each in (engine, read_engine, probe_engine, scrape_engine):
            each.dispose()
        metrics.worker_stopped()
        if reporter is not None:
            reporter.engine.dispose()
        if tracer is not None:
            tracer.shutdown()  # exports what is left

    # Lifespans of this app running now.  Two may overlap (a test client, and schemathesis
    # calling the same app with its own): the first starts the background work, the last to
    # end stops it, so neither stops what the other still uses nor leaves a thread behind.
    running = 0

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal running
        running += 1
        if running == 1:
            try:
                await start()
            except BaseException:
                running -= 1
                raise
        try:
            yield
        finally:
            running -= 1
            if running == 0:
                await stop()

    routers = list(module_routers(registry))
    served = {name for name, _ in routers}  # a module without endpoints gets no tag
    tags = [
        {"name": m.name, "description": m.description} for m in registry.modules if m.name in served
    ]
    app = make_app(
        routers,
        engine=engine,
        read_engine=read_engine,
        registry=registry,
        title="Tecno Rev",
        version=VERSION,
        tags=[{"name": "service", "description": "health and readiness"}, *tags],
        lifespan=lifespan,
        admission=admission,
        telemetry=tracing.fastapi_telemetry(tracer),
    )
    app.state.tracer_provider = tracer
    app.state.read_router = router
    probe_thread = _ProbeThread()

    service = ApiSettings()
    if service.gzip_min_size:
        # level 3: an order page's 26 KB to 3.9 KB in 54 µs; level 5 makes 3.5 KB in 105 µs,
        # level 9 3.4 KB in 281 µs (measured, best of five)
        app.add_middleware(GZipMiddleware, minimum_size=service.gzip_min_size, compresslevel=3)
    if service.cors_origins:
        # outermost: a browser's preflight is answered before anything else runs
        app.add_middleware(
            CORSMiddleware,
            allow_origins=service.cors_origins,
            allow_credentials="*" not in service.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotency-Replayed"],
            max_age=600,
        )
    if router is not None:
        # inside CORS: a browser's write gets the position too
        app.add_middleware(HandOutPosition, router=router)
    versions = installed_versions()

    @app.get(
        "/health",
        tags=["service"],
        summary="the process is up, and what it runs",
        operation_id="service-health",
    )
    async def health() -> dict[str, object]:
        # async: answered on the event loop, whatever the threads and the database are doing
        return {
            "status": "ok",
            "version": VERSION,
            "build": settings.build_id,
            "modules": registry.names,
            **versions,
        }

    # on a port of their own, `tecnorev serve` serves them
    if settings.metrics and service.metrics_port is None:
        scraped = [MigrationState(readiness, scrape_engine), OutboxBacklog(scrape_engine)]
        scrape_thread = _ProbeThread()  # a slow scrape never delays /ready

        @app.get("/metrics", include_in_schema=False)  # text for Prometheus, not the API
        async def scrape(request: Request) -> Response:
            token = service.metrics_token
            if token is not None and not token_matches(
                token.get_secret_value(), request.headers.get("authorization")
            ):
                return error_response(
                    401,
                    "unauthorized",
                    "a metrics token is required",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            with anyio.move_on_after(ready_timeout * 2):
                body = await anyio.to_thread.run_sync(
                    lambda: metrics.exposition(scraped),
                    limiter=scrape_thread.limiter(),
                    abandon_on_cancel=True,
                )
                return Response(body, media_type=metrics.CONTENT_TYPE_LATEST)
            return error_response(503, "timeout", "collecting the metrics took too long")

    @app.get(
        "/ready",
        tags=["service"],
        summary="the database is reachable and every installed module's migrations are applied",
        responses={503: {"description": "not ready: the body says why"}},
        operation_id="service-ready",
    )
    async def ready() -> JSONResponse:
        def check() -> JSONResponse:
            return _readiness(readiness, probe_engine, reporter, router)

        with anyio.move_on_after(ready_timeout):
            return await anyio.to_thread.run_sync(
                check, limiter=probe_thread.limiter(), abandon_on_cancel=True
            )
        log.warning("not ready: the database did not answer within %.1fs", ready_timeout)
        body = {"status": "not_ready", "database": "timeout", "behind": {}}
        return JSONResponse(body, status_code=503)

    return app


def check_compatible(registry: Registry) -> None:
    """Modules that were never released together do not serve: pip keeps each module's
    requirements met, ``--no-deps`` or a downgrade by hand does not."""
    problems = compatibility.incompatibilities(EngineRegistry.of(registry))
    if problems:
        raise DiscoveryError("the installed modules do not work together: " + "; ".join(problems))


def check_worker_settings() -> tuple[RequestTimeouts, float, float]:
    """Read every setting a worker reads, so a bad one stops start-up with its name rather
    than failing requests: the request timeouts, the pool and readiness waits."""
    validate_settings()
    read_threads()
    AdmissionLimits.from_env(1)
    timeouts = RequestTimeouts.from_env()
    return timeouts, pool_timeout(), ApiSettings().ready_timeout


class _ProbeThread:
    """One thread at a time for an app's readiness probes (made inside its event loop).
    A probe abandoned at its timeout may still run: the next waits for its connection."""

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None

    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        return self._limiter


def _replica_reporter(
    database_url: str | None, timeouts: RequestTimeouts, readiness: ReadinessCheck
) -> Reporter | None:
    """This worker's report of the release it runs (PostgreSQL): what ``tecnorev db
    contract`` waits on during a rolling deploy.  A connection of its own, opened per report."""
    interval = ApiSettings().replica_report_interval
    if interval <= 0:
        return None
    engine = create_db_engine(database_url, timeouts=timeouts, poolclass=sa.pool.NullPool)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        return None
    return Reporter(engine, code_heads(readiness.scripts, readiness.registry), interval)


def _dispatcher(
    database_url: str | None, timeouts: RequestTimeouts, registry: Registry
) -> BackgroundDispatcher | None:
    """This worker's outbox dispatcher (unless ``tecnorev worker`` processes do it): one
    connection for deliveries, one listening for NOTIFY on PostgreSQL."""
    if not OutboxSettings().outbox_in_service:
        return None
    engine = create_db_engine(
        database_url, timeouts=timeouts, pool_size=1, max_overflow=1, pool_recycle=1800
    )
    return BackgroundDispatcher(Dispatcher(engine, registry=registry))


def _read_router(
    settings: CoreSettings,
    engine: sa.Engine,
    read_engine: sa.Engine,
    pool_size: int,
    options: dict[str, Any],
) -> ReadRouter | None:
    """Reads on the replicas of ``TECNOREV_READ_REPLICA_URLS`` (see ``read_replicas``), with
    the primary's own reading engine behind them; None without replicas."""
    if not settings.read_replica_urls:
        return None
    if engine.dialect.name != "postgresql":
        raise ConfigError("TECNOREV_READ_REPLICA_URLS needs DATABASE_URL on PostgreSQL")
    for url in settings.read_replica_urls:
        check_replica_budget(url, pool_size)
    replicas = [
        (
            replica_name(url),
            create_db_engine(
                url,
                isolation_level="AUTOCOMMIT",
                **loop_reading(sa.make_url(url), {"pool_size": pool_size, **options}),
            ),
        )
        for url in settings.read_replica_urls
    ]
    for name, replica in replicas:
        metrics.watch_pool(replica, f"replica {name}")
        if settings.db_pooler != "transaction":
            sa.event.listen(replica, "connect", prepare_on)  # as the primary's reads
    # asks the primary where it stands: connections of its own, not the requests'
    positions = create_db_engine(
        engine.url.render_as_string(hide_password=False),
        timeouts=options["timeouts"],
        pool_size=2,
        max_overflow=0,
        pool_timeout=options["pool_timeout"],
    )
    return ReadRouter(
        positions,
        read_engine,
        replicas,
        max_lag=settings.replica_max_lag,
        interval=settings.replica_check_interval,
    )


def _readiness(
    readiness: ReadinessCheck,
    engine: sa.Engine,
    reporter: Reporter | None = None,
    router: ReadRouter | None = None,
) -> JSONResponse:
    try:
        report = readiness.report(engine)
    except (DatabaseUnavailable, SchemaUnreachable, sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
        log.warning("not ready: %s", exc)
        unreachable = {"status": "not_ready", "database": "unreachable", "behind": {}}
        return JSONResponse(unreachable, status_code=503)
    late = behind(report)
    body: dict[str, Any] = {
        "status": "not_ready" if late else "ready",
        "database": "ok",
        "behind": late,
        "modules": {m.module: m.state.value for m in report.modules},
    }
    if reporter is not None:
        body["replica"] = reporter.replica
    if router is not None:
        # the primary serves whatever the replicas cannot: they never make it unready
        body["read_replicas"] = router.report()
    return JSONResponse(body, status_code=503 if late else 200)


def _stop_statements(checkouts: list[Checkouts]) -> None:
    cancelled = sum(each.cancel() for each in checkouts)
    if not cancelled:
        return
    log.warning("stopping: cancelled the statements of %d requests still running", cancelled)
    if not all(each.wait_returned(SHUTDOWN_CANCEL_WAIT) for each in checkouts):
        log.error("stopping: connections still in use after %.0fs", SHUTDOWN_CANCEL_WAIT)


def check_ready_to_serve(
    *, database_url: str | None = None, registry: Registry | None = None
) -> None:
    """Refuse, as production start-up does, a database that is unreachable or lacks a
    module's migrations.  ``tecnorev serve`` asks before starting any worker, so the
    operator reads one line instead of each worker's start-up traceback."""
    registry = registry or get_registry()
    engine = create_db_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        _check_schema(engine, ReadinessCheck(EngineRegistry.of(registry)), production=True)
    finally:
        engine.dispose()


def _check_schema(engine: sa.Engine, readiness: ReadinessCheck, *, production: bool) -> None:
    """Say at start-up what the database lacks; production refuses to serve with it."""
    try:
        check_connection(engine)
        late = behind(readiness.report(engine))
    except (DatabaseUnavailable, SchemaUnreachable) as exc:
        if production:
            raise DatabaseUnavailable(str(exc)) from exc
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
