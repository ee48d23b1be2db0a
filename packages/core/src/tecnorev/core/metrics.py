"""The process's Prometheus metrics, and how modules count what their transactions did.

With several ``tecnorev serve`` workers, ``PROMETHEUS_MULTIPROC_DIR`` (set by ``serve``
before any worker starts) makes every metric a file the scrape adds up across the workers;
alone, they live in the process.  Gauges that describe a live process (requests in flight,
connections checked out) sum over the live workers only.

A module counts a fact of the domain with :func:`count_on_commit`: the count lands only if the
request's transaction commits, so a rolled-back order is not an order placed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession

if TYPE_CHECKING:
    import sqlalchemy as sa
    from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Counter", "Gauge", "Histogram", "count_on_commit"]

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
_PENDING = "tecnorev.metrics.pending"
_SAVEPOINTS = "tecnorev.metrics.savepoints"

# Requests: by route template (never the raw path, whose ids would make a series per row)
REQUEST_DURATION = Histogram(
    "tecnorev_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and status",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "tecnorev_http_requests_in_flight",
    "Requests being answered now",
    multiprocess_mode="livesum",
)
ADMISSION_REFUSED = Counter(
    "tecnorev_admission_refused_total",
    "Requests refused before they ran: overloaded (no place within the wait) or "
    "body_timeout (the body arrived too slowly)",
    ["reason"],
)
CONNECTIONS_REBALANCED = Counter(
    "tecnorev_http_connections_rebalanced_total",
    "Client connections a worker closed after answering them (Connection: close) because it "
    "held more than its share of the server's keep-alive connections",
)
DATABASE_WAITS = Counter(
    "tecnorev_db_timeouts_total",
    "Requests that waited too long on the database: lock (lock_timeout), statement "
    "(statement_timeout), pool (no free connection), busy (SQLite file locked)",
    ["kind"],
)
POOL_CHECKED_OUT = Gauge(
    "tecnorev_db_pool_checked_out",
    "Connections in use by requests, per pool",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "tecnorev_db_pool_size",
    "Connections a pool keeps, per pool",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "tecnorev_db_pool_overflow",
    "Connections opened past a pool's size (each pool allows none: a full pool makes "
    "requests wait, then 503)",
    ["pool"],
    multiprocess_mode="livesum",
)
# every worker checks the replicas on its own: the scrape shows the furthest behind
REPLICA_LAG_SECONDS = Gauge(
    "tecnorev_read_replica_lag_seconds",
    "How far a read replica's replay is behind the primary (0 when it has replayed all the "
    "primary had written at the last check), per replica",
    ["replica"],
    multiprocess_mode="livemax",
)
REPLICA_LAG_BYTES = Gauge(
    "tecnorev_read_replica_lag_bytes",
    "WAL the primary had written that a read replica had not replayed, per replica",
    ["replica"],
    multiprocess_mode="livemax",
)
REPLICA_SERVING = Gauge(
    "tecnorev_read_replica_serving",
    "1 while a read replica is reachable and within TECNOREV_REPLICA_MAX_LAG, else 0",
    ["replica"],
    multiprocess_mode="livemin",
)
OUTBOX_DELIVERIES = Counter(
    "tecnorev_outbox_deliveries_total",
    "Attempts to deliver an event to a subscriber, by outcome: delivered, retry (it raised and "
    "will be attempted again), dead (it raised on its last attempt)",
    ["subscriber", "outcome"],
)


def count_on_commit(
    session: OrmSession, counter: Counter, amount: float = 1, **labels: str
) -> None:
    """Add ``amount`` to ``counter`` once ``session``'s transaction commits (not at all if it
    rolls back)."""
    session.info.setdefault(_PENDING, []).append((counter, amount, labels))


@sa_event.listens_for(OrmSession, "after_transaction_create")
def _savepoint_began(session: OrmSession, transaction: Any) -> None:
    if transaction.nested:  # where its counts start, to drop them if it rolls back
        pending = session.info.get(_PENDING, ())
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(pending)


@sa_event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:
    if session.in_nested_transaction():  # a savepoint released: its counts wait for the end
        session.info.get(_SAVEPOINTS, {}).pop(session.get_nested_transaction(), None)
        return
    for counter, amount, labels in session.info.pop(_PENDING, ()):
        (counter.labels(**labels) if labels else counter).inc(amount)


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _ended(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:  # committed (counted above) or rolled back: nothing left
        session.info.pop(_PENDING, None)
        session.info.pop(_SAVEPOINTS, None)
        return
    start = session.info.get(_SAVEPOINTS, {}).pop(transaction, None)
    pending = session.info.get(_PENDING)
    if start is not None and pending:  # a savepoint rolled back: so did what it counted
        del pending[start:]


def watch_pool(engine: sa.Engine, name: str) -> None:
    """Keep ``name``'s gauges current from its pool's own events."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    if callable(size):
        POOL_SIZE.labels(pool=name).set(size())
    checked_out = POOL_CHECKED_OUT.labels(pool=name)
    overflow = POOL_OVERFLOW.labels(pool=name)
    measure_overflow = getattr(pool, "overflow", None)

    def checkout(*_: Any) -> None:
        checked_out.inc()
        if callable(measure_overflow):
            overflow.set(max(0, measure_overflow()))

    sa_event.listen(pool, "checkout", checkout)
    sa_event.listen(pool, "checkin", lambda *_: checked_out.dec())


def is_multiprocess() -> bool:
    """Whether this process's metrics live in the shared directory: decided by
    prometheus-client when first imported (a process imported before ``serve`` set the
    directory keeps them in memory, and is scraped from there)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue and bool(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    )


def multiprocess_registry(*, from_files: bool | None = None) -> CollectorRegistry:
    """A registry that reads every worker's metrics from the shared directory, or this
    process's own (default: whichever this process writes to)."""
    registry = CollectorRegistry()
    if is_multiprocess() if from_files is None else from_files:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Everything())
    return registry


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text a scrape reads: every worker's metrics (or this process's), then ``extra``
    (collected now, by this process)."""
    registry = multiprocess_registry()
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


class _Everything:
    """The process's default registry, seen from another one (so that ``extra`` collectors
    are not registered in the default registry for good)."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()


def worker_stopped(pid: int | None = None) -> None:
    """Drop a stopped worker's live gauges from the shared directory."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid or os.getpid())
