"""How many database connections each worker may keep, and so how many requests it admits.

Each admitted request holds at most one connection of each pool, so the writing pool is as
wide as the admission limit and a checkout never waits behind a request that waits on a lock.
Unless ``TECNOREV_DB_POOL_SIZE`` sets both pools, the widths come from the server: the
connections its ``max_connections`` leaves, less its superuser reserve and
``TECNOREV_DB_CONNECTION_RESERVE`` (for migrations, consoles, monitoring), shared by the
workers of this server (``TECNOREV_WORKERS``).  Two workers on PostgreSQL's default of 100 then
stay under it however busy they are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tecnorev.api.settings import ApiSettings
from tecnorev.core.db import check_connection, create_db_engine
from tecnorev.core.errors import ConfigError, DatabaseUnavailable

log = logging.getLogger("tecnorev.api")

# The widest pool worth having: anyio's default thread pool.  A worker on two cores is
# saturated long before; wider pools only hold idle server backends.
MAX_POOL = 40
MIN_WRITE_POOL = 2
MIN_READ_POOL = 1


@dataclass(frozen=True)
class PoolPlan:
    """The width of a worker's two pools; ``write`` is also its admission limit."""

    write: int
    read: int
    reason: str

    @property
    def per_worker(self) -> int:
        return self.write + self.read


def pool_timeout() -> float:
    """Longest wait for a free connection, then ``503 overloaded``: ``TECNOREV_DB_POOL_TIMEOUT``."""
    return ApiSettings().db_pool_timeout


def split(budget: int, *, reason: str) -> PoolPlan:
    """``budget`` connections for one worker, three quarters of them for the writing pool:
    public reads hold theirs for a single statement and need fewer."""
    write = min(MAX_POOL, max(MIN_WRITE_POOL, budget * 3 // 4))
    read = min(MAX_POOL, max(MIN_READ_POOL, budget - write))
    return PoolPlan(write, read, reason)


@dataclass(frozen=True)
class ServerLimits:
    max_connections: int
    superuser_reserved: int

    def budget(self, *, reserve: int, workers: int) -> int:
        return (self.max_connections - self.superuser_reserved - reserve) // workers


ASSUMED = ServerLimits(max_connections=100, superuser_reserved=3)  # PostgreSQL's defaults


def server_limits(url: str | None) -> ServerLimits | None:
    """The server's connection limits, read over one short-lived connection; ``None`` for
    SQLite, which has none."""
    engine = create_db_engine(url, poolclass=sa.pool.NullPool)
    try:
        if engine.dialect.name != "postgresql":
            return None
        check_connection(engine)
        with engine.connect() as connection:
            row = connection.exec_driver_sql(
                "SELECT current_setting('max_connections')::int,"
                " current_setting('superuser_reserved_connections')::int"
            ).one()
        return ServerLimits(row[0], row[1])
    finally:
        engine.dispose()


def plan_pools(url: str | None = None, *, strict: bool = False) -> PoolPlan:
    """The pools of one worker of this server.  An unreachable server gives the widest pools
    with a warning (``strict``: the error); a budget too small for the workers is refused."""
    settings = ApiSettings()
    explicit = settings.db_pool_size
    count = settings.workers
    reserve = settings.db_connection_reserve
    try:
        limits = server_limits(url)
    except DatabaseUnavailable:
        if strict:
            raise
        # sized as for PostgreSQL's defaults, so several workers still fit such a server
        limits = ASSUMED
        if explicit is None:
            log.warning(
                "pool sizes not read from the server (unreachable): sized for max_connections=%d",
                ASSUMED.max_connections,
            )
    if explicit is not None:
        plan = PoolPlan(explicit, explicit, "TECNOREV_DB_POOL_SIZE")
        if limits is not None:
            budget = limits.budget(reserve=reserve, workers=count)
            if plan.per_worker > budget:
                log.warning(
                    "TECNOREV_DB_POOL_SIZE=%d: %d workers may open %d connections, more than "
                    "the %d that max_connections=%d leaves (less %d reserved by the server "
                    "and TECNOREV_DB_CONNECTION_RESERVE=%d)",
                    explicit, count, plan.per_worker * count, budget * count,
                    limits.max_connections, limits.superuser_reserved, reserve,
                )  # fmt: skip
        return plan
    if limits is None:
        return PoolPlan(MAX_POOL, MAX_POOL, "default")  # SQLite
    budget = limits.budget(reserve=reserve, workers=count)
    if budget < MIN_WRITE_POOL + MIN_READ_POOL:
        raise ConfigError(
            f"the database allows max_connections={limits.max_connections} "
            f"({limits.superuser_reserved} reserved for superusers); less "
            f"TECNOREV_DB_CONNECTION_RESERVE={reserve}, {count} workers get {max(budget, 0)} "
            f"connections each and need at least {MIN_WRITE_POOL + MIN_READ_POOL}: lower "
            "TECNOREV_WORKERS or the reserve, or raise max_connections"
        )
    return split(
        budget,
        reason=(
            f"max_connections={limits.max_connections} less {limits.superuser_reserved} + "
            f"{reserve} reserved, over {count} worker(s)"
        ),
    )


def check_replica_budget(url: str, pool_size: int) -> None:
    """A read replica takes each worker's reading pool (``pool_size``): warn, with the
    numbers, when the workers could open more than its ``max_connections`` leaves.  A standby
    allows at least its primary's ``max_connections``, so only an explicit
    ``TECNOREV_DB_POOL_SIZE`` can exceed it, which the primary's plan keeps with a warning too.
    A replica that does not answer is only logged: the API reads on the primary until it does."""
    settings = ApiSettings()
    try:
        limits = server_limits(url)
    except DatabaseUnavailable as exc:
        log.warning("read replica not checked at start-up (unreachable): %s", exc)
        return
    if limits is None:
        return
    budget = limits.budget(reserve=settings.db_connection_reserve, workers=settings.workers)
    if pool_size > budget:
        log.warning(
            "read replica %s: %d workers may open %d connections, more than the %d that "
            "max_connections=%d leaves (less %d reserved by the server and "
            "TECNOREV_DB_CONNECTION_RESERVE=%d); lower TECNOREV_DB_POOL_SIZE or "
            "TECNOREV_WORKERS, or raise the replica's max_connections",
            make_url(url).render_as_string(hide_password=True),
            settings.workers, pool_size * settings.workers, max(budget, 0) * settings.workers,
            limits.max_connections, limits.superuser_reserved, settings.db_connection_reserve,
        )  # fmt: skip
