"""``tecnorev serve``: the API under uvicorn, configured from the environment or ``.env``."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import socket
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tecnorev.core.errors import ConfigError, DatabaseUnavailable

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI


def serve(
    host: Annotated[
        str | None, typer.Option(help="address to bind (default: TECNOREV_HOST, else 127.0.0.1)")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="port (default: TECNOREV_PORT, else 8000)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="worker processes (default: TECNOREV_WORKERS, else 1)"),
    ] = None,
    reload: Annotated[bool, typer.Option(help="restart on code changes (development)")] = False,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error (default: TECNOREV_LOG_LEVEL)")
    ] = None,
    log_config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="a logging configuration (.json, .yaml or .ini) used instead of the built-in "
            "one (default: TECNOREV_LOG_CONFIG)",
        ),
    ] = None,
) -> None:
    """Serve the API composed from the installed modules (docs at /docs, metrics at /metrics)."""
    # First: prometheus-client picks per-process files or memory when it is first imported,
    # and every worker must write where the scrape reads.
    metrics_dir = _metrics_directory()
    try:
        _serve(host, port, workers, reload, log_level, log_config)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _serve(
    host: str | None,
    port: int | None,
    workers: int | None,
    reload: bool,
    log_level: str | None,
    log_config: Path | None,
) -> None:
    import uvicorn

    from tecnorev.api.settings import ApiSettings
    from tecnorev.core.logs import configure_logging, logging_config
    from tecnorev.core.settings import get_settings, signing_key
    from tecnorev.core.settings_schema import validate_settings

    validate_settings()  # every bad setting of every installed part, in one message
    settings = get_settings()
    signing_key(settings)
    service = ApiSettings()
    host = host or service.host
    port = port or service.port
    log_level = (log_level or service.log_level).lower()
    workers = workers or service.workers
    chosen_config = str(log_config or service.log_config or "") or None
    if chosen_config is not None and not Path(chosen_config).is_file():
        raise ConfigError(f"TECNOREV_LOG_CONFIG={chosen_config!r} is not a file")
    configure_logging(log_level)
    # each worker sizes its pools for this many workers sharing the server's connections
    os.environ["TECNOREV_WORKERS"] = str(workers)
    grace = service.shutdown_grace
    # Checked here too, not only in each worker: a worker that fails on it would be
    # restarted by the supervisor over and over instead of stopping the server with a
    # message.  The database must answer: the pools are sized from its limits.
    from tecnorev.api.app import check_compatible, check_ready_to_serve, check_worker_settings
    from tecnorev.api.pools import plan_pools
    from tecnorev.core.registry import get_registry
    from tecnorev.core.web.admission import AdmissionLimits

    check_worker_settings()
    check_compatible(get_registry())
    try:
        pools = plan_pools(strict=True)
        if settings.is_production:
            check_ready_to_serve()
    except DatabaseUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from exc
    # Several workers on the plain asyncio/h11 stack lose TCP_NODELAY and answer an order of
    # magnitude slower; uvloop + httptools (uvicorn[standard]) do not.
    fast = find_spec("uvloop") is not None and find_spec("httptools") is not None
    if workers > 1 and not fast:
        raise ConfigError(
            "several workers need uvloop and httptools: pip install 'uvicorn[standard]'"
        )
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "loop": "uvloop" if fast else "auto",
        "http": "httptools" if fast else "auto",
        "log_level": log_level,
        # each worker configures its logging from this (and so writes as the parent does)
        "log_config": chosen_config or logging_config(log_level),
        "access_log": False,  # the service writes its own, with route, duration, request id
        "proxy_headers": True,
        # then requests still running are cancelled, their statements too (see create_app)
        "timeout_graceful_shutdown": grace,
    }
    _check_free(host, port)
    admitted = AdmissionLimits.from_env(pools.write).limit
    logging.getLogger("tecnorev.api").info(
        "tecnorev serve: %d worker(s), each with %d writing + %d reading connections (%s) and "
        "up to %d requests at once",
        workers, pools.write, pools.read, pools.reason, admitted,
    )  # fmt: skip
    if service.metrics_port is not None:
        # the workers are processes of their own (files), or this very process (memory)
        _serve_metrics(host, service.metrics_port, from_files=reload or workers > 1)
    # Linux spreads connections over a SO_REUSEPORT group; other systems do not
    if reload or workers == 1 or not sys.platform.startswith("linux"):
        uvicorn.run(SERVED_APP, workers=None if reload else workers, reload=reload, **options)
    else:
        _run_workers(uvicorn.Config(SERVED_APP, workers=workers, **options))


SERVED_APP = "tecnorev.api.serve:served_app"


def _metrics_directory() -> str | None:
    """Where the workers' metrics files go: the operator's PROMETHEUS_MULTIPROC_DIR (emptied:
    files of an earlier run would add to this one's), else a directory of this run, removed
    at exit (returned)."""
    from tecnorev.core.metrics import MULTIPROCESS_DIR

    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        own = f"_{os.getpid()}.db"  # this process's own, if it writes there already
        for stale in folder.glob("*.db"):
            if not stale.name.endswith(own):
                stale.unlink()
        return None
    made = tempfile.mkdtemp(prefix="tecnorev-metrics-")
    os.environ[MULTIPROCESS_DIR] = made
    return made


def _serve_metrics(host: str, port: int, *, from_files: bool) -> None:
    """/metrics on a port of its own, answered by this process from the workers' files: a
    port the firewall keeps to the monitoring network."""
    import prometheus_client
    import sqlalchemy as sa

    from tecnorev.api.observability import MigrationState, OutboxBacklog
    from tecnorev.api.settings import ApiSettings
    from tecnorev.core.db import RequestTimeouts, create_db_engine
    from tecnorev.core.metrics import multiprocess_registry
    from tecnorev.core.registry import get_registry
    from tecnorev.migrate.modules import Registry as EngineRegistry
    from tecnorev.migrate.readiness import ReadinessCheck

    _check_free(host, port)
    wait = ApiSettings().ready_timeout
    engine = create_db_engine(
        timeouts=RequestTimeouts(wait, wait, wait), poolclass=sa.pool.NullPool
    )
    registry = multiprocess_registry(from_files=from_files)
    registry.register(MigrationState(ReadinessCheck(EngineRegistry.of(get_registry())), engine))
    registry.register(OutboxBacklog(engine))
    prometheus_client.start_http_server(port, addr=host, registry=registry)
    logging.getLogger("tecnorev.api").info("metrics on http://%s:%d/metrics", host, port)


def served_app() -> FastAPI:
    """The app a ``tecnorev serve`` process serves: ``create_app()``, with what it built
    moved out of the garbage collector's sight.

    Everything imported and built at start-up (modules, tables, schemas, routes) lives as
    long as the process, yet every full collection walked it again: pauses that showed as
    the p99 of the product list, and CPU on every request.  ``gc.freeze`` leaves those
    objects out of collections from then on.
    """
    from tecnorev.api.app import create_app

    app = create_app()
    gc.collect()
    gc.freeze()
    return app


def _check_free(host: str, port: int) -> None:
    """Refuse an address already taken, with a message.  A bind without ``SO_REUSEPORT``
    fails on any listening holder, including another server's ``SO_REUSEPORT`` group,
    which the workers' sockets below would otherwise join and share connections with."""
    probe = socket.socket(_family(host))
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    finally:
        probe.close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _run_workers(config: uvicorn.Config) -> None:
    """uvicorn's supervisor (restarts, signals, health checks), with a listening socket per
    worker instead of one shared by all.

    On a shared socket, the worker that wakes first accepts every pending connection in one
    go: the 32 connections a client pool opens at once can all land on one worker while the
    other idles, and keep-alive keeps them there.  With ``SO_REUSEPORT`` the kernel spreads
    new connections over the workers' sockets, and a worker holding more than its share of
    them closes the extra ones after their answer (``tecnorev.api.spread``).
    """
    from uvicorn.supervisors import Multiprocess

    from tecnorev.api.spread import PROTOCOL, Spread

    config.http = PROTOCOL
    config.spread = Spread(config.workers)  # type: ignore[attr-defined]  # read by PROTOCOL
    address = _Address(_family(config.host))
    _bind(address, (config.host, config.port))
    logging.getLogger("uvicorn.error").info(
        "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", config.host, address.port
    )
    try:
        Multiprocess(config, sockets=[address]).run()
    finally:
        address.close()


class _Address(socket.socket):
    """The parent's hold on the address: bound, never listening, so the kernel hands it no
    connection.  uvicorn pickles the sockets it gives each worker; this one unpickles as a
    new socket bound to the same address, which the worker listens on."""

    @property
    def port(self) -> int:
        return int(self.getsockname()[1])

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _bound, (self.family, self.getsockname())


def _bound(family: socket.AddressFamily, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family)
    _bind(sock, address)
    return sock


def _bind(sock: socket.socket, address: tuple[Any, ...]) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
