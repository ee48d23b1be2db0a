"""What the service tells an operator: ``/metrics`` (every worker's metrics plus each module's
migration state, read at scrape time), and the versions ``/health`` reports."""

from __future__ import annotations

import hmac
import logging
import sys
from collections.abc import Iterator
from functools import cache
from importlib.metadata import distributions

import sqlalchemy as sa
from packaging.utils import canonicalize_name
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tecnorev.migrate.readiness import ReadinessCheck

log = logging.getLogger("tecnorev.api")


class MigrationState(Collector):
    """Per installed module: revisions pending, the applied heads, its state; and whether the
    database answered at all.  Collected by the process that serves the scrape."""

    def __init__(self, readiness: ReadinessCheck, engine: sa.Engine) -> None:
        self.readiness = readiness
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tecnorev_migration_database_up",
            "1 when the migration state could be read from the database at this scrape",
        )
        try:
            report = self.readiness.report(self.engine)
        except Exception as exc:  # a scrape must answer, whatever the database does
            log.warning("metrics: cannot read the migration state: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        pending = GaugeMetricFamily(
            "tecnorev_migration_pending_revisions",
            "Revisions of a module's installed code not applied yet (contract ones included)",
            labels=["module"],
        )
        heads = GaugeMetricFamily(
            "tecnorev_migration_applied_head_info",
            "The module's revisions the database is at (1 per head)",
            labels=["module", "revision"],
        )
        state = GaugeMetricFamily(
            "tecnorev_migration_state_info",
            "The module's migration state, as tecnorev db status names it",
            labels=["module", "state"],
        )
        for module in report.modules:
            pending.add_metric([module.module], len(module.pending_revisions))
            for revision in module.database_revisions:
                heads.add_metric([module.module, revision], 1)
            state.add_metric([module.module, module.state.value], 1)
        yield from (pending, heads, state)


class OutboxBacklog(Collector):
    """Deliveries waiting (pending) and given up on (dead), counted at scrape time."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        from tecnorev.core.db import table_of
        from tecnorev.core.outbox.models import DeliveryStatus, OutboxMessage

        table = table_of(OutboxMessage)
        family = GaugeMetricFamily(
            "tecnorev_outbox_backlog",
            "Outbox deliveries pending (due now or later) and dead (tecnorev events list)",
            labels=["status"],
        )
        waiting = (DeliveryStatus.PENDING, DeliveryStatus.DEAD)
        try:
            with self.engine.connect() as connection:
                counts: dict[str, int] = dict(
                    connection.execute(
                        sa.select(table.c.status, sa.func.count())
                        .where(table.c.status.in_(waiting))
                        .group_by(table.c.status)
                    ).all()
                )
        except Exception as exc:  # no outbox table yet, or no database: say nothing
            log.debug("metrics: cannot count the outbox: %s", exc)
            return
        for status in waiting:
            family.add_metric([status.value], counts.get(status, 0))
        yield family


def token_matches(expected: str, authorization: str | None) -> bool:
    """A constant-time comparison, on bytes: a header may hold any latin-1 character."""
    scheme, _, given = (authorization or "").partition(" ")
    return (
        bool(expected)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))
    )


PLATFORM = ("fastapi", "sqlalchemy", "sqlmodel", "alembic", "uvicorn", "psycopg2-binary")


@cache
def installed_versions() -> dict[str, dict[str, str]]:
    """Every installed ``tecnorev-*`` distribution and the platform under it, with their
    versions (read once a process)."""
    ours: dict[str, str] = {}
    platform = {"python": sys.version.split()[0]}
    for dist in distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name.startswith("tecnorev-"):
            ours[name] = dist.version
        elif name in PLATFORM:
            platform[name] = dist.version
    return {"distributions": dict(sorted(ours.items())), "platform": platform}
