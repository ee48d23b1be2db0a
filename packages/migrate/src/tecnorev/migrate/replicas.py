"""Which release each running replica serves: what lets a contract revision wait until no
replica of the old release is left.

Each service process on PostgreSQL reports itself in ``tecnorev_replica`` when it starts and
then every ``interval`` seconds: its host and pid, and for each installed module the
distribution version and the code heads it runs.  A report expires ``EXPIRY_FACTOR`` intervals
after it was written (the database's clock on both sides, so hosts' clocks do not matter); a
process that stops cleanly withdraws its report at once, a killed one is forgotten when its
report expires.  ``tecnorev db contract`` reads the live reports: a replica whose code for a
module predates a contract revision of that module holds that revision back.

SQLite serves from one process with no rolling deploy: nothing is reported there.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tecnorev.migrate.ledger import distribution_version, ledger_metadata
from tecnorev.migrate.types import UTCDateTime

if TYPE_CHECKING:
    from alembic.script import Script

    from tecnorev.migrate.modules import Registry

log = logging.getLogger("tecnorev.migrate.replicas")

EXPIRY_FACTOR = 3  # missed reports before a replica counts as gone
DEFAULT_INTERVAL = 10.0

replica_report = sa.Table(
    "tecnorev_replica",
    ledger_metadata,
    sa.Column("replica", sa.String(128), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
    # {"<module>": {"version": "0.1.0", "heads": ["<revision>", ...]}, ...}
    sa.Column("modules", sa.Text, nullable=False),
)


def ensure_table(connection: sa.Connection) -> None:
    if connection.dialect.name == "postgresql":
        ledger_metadata.create_all(connection, tables=[replica_report])


def code_heads(scripts: Mapping[str, Script], registry: Registry) -> dict[str, dict[str, Any]]:
    """What a replica running this code reports: each module's version and code heads."""
    from tecnorev.migrate.status import owners_of

    heads: dict[str, list[str]] = {name: [] for name in registry.names}
    for revision, owner in owners_of(scripts, registry).items():
        if scripts[revision].is_head:
            heads[owner].append(revision)
    return {
        module.name: {
            "version": distribution_version(module.distribution),
            "heads": sorted(heads[module.name]),
        }
        for module in registry.modules
    }


@dataclass(frozen=True)
class Replica:
    replica: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    expires_at: datetime
    modules: Mapping[str, Mapping[str, Any]]

    def describe(self) -> str:
        return f"replica {self.replica} (pid {self.pid} on {self.host})"

    def to_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "modules": dict(self.modules),
        }


def live(connection: sa.Connection) -> list[Replica]:
    """Replicas whose last report has not expired (none on SQLite, or before any report)."""
    if connection.dialect.name != "postgresql":
        return []
    if not sa.inspect(connection).has_table(replica_report.name):
        return []
    table = replica_report.c
    query = (
        sa.select(replica_report)
        .where(table.expires_at > sa.func.now())
        .order_by(table.host, table.pid, table.replica)
    )
    found = []
    for row in connection.execute(query).mappings():
        values = dict(row)
        values["modules"] = json.loads(values["modules"] or "{}")
        found.append(Replica(**values))
    return found


def forget(connection: sa.Connection, replica: str) -> bool:
    """Drop a replica's report (one known dead before its report expires)."""
    if not sa.inspect(connection).has_table(replica_report.name):
        return False
    deleted = connection.execute(replica_report.delete().where(replica_report.c.replica == replica))
    return deleted.rowcount > 0


def ancestry(revision: str, scripts: Mapping[str, Script]) -> set[str]:
    seen: set[str] = set()
    stack = [revision]
    while stack:
        current = stack.pop()
        if current in seen or current not in scripts:
            continue
        seen.add(current)
        stack.extend(scripts[current]._all_down_revisions)
    return seen


def still_behind(
    replicas: Iterable[Replica], contracts: Mapping[str, str], scripts: Mapping[str, Script]
) -> list[str]:
    """Why each contract revision (revision -> module) cannot run yet: a live replica runs
    that module with code that does not include it."""
    reasons = []
    known: dict[str, set[str]] = {}
    for replica in replicas:
        for revision, module in sorted(contracts.items()):
            running = replica.modules.get(module)
            if running is None:
                continue  # the module is not installed there: it uses none of its tables
            heads = list(running.get("heads") or ())
            unknown = [h for h in heads if h not in scripts]
            for head in heads:
                if head not in known:
                    known[head] = ancestry(head, scripts)
            if any(revision in known[h] for h in heads):
                continue
            version = running.get("version") or "an unknown version"
            if unknown:
                why = f"runs {module} at {', '.join(unknown)}, which this code does not know"
            else:
                why = f"runs {module} {version}, whose code predates {revision}"
            reasons.append(f"{replica.describe()} {why}")
    return reasons


def replica_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Reporter:
    """Reports this process as a replica every ``interval`` seconds from a daemon thread, on a
    connection of its own (never one of the application's)."""

    def __init__(
        self, engine: sa.Engine, modules: Mapping[str, Mapping[str, Any]], interval: float
    ) -> None:
        self.engine = engine
        self.modules = json.dumps(modules, sort_keys=True)
        self.interval = interval
        self.replica = replica_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def report(self) -> bool:
        """Write this replica's report once; False (logged) when it could not be written."""
        from sqlalchemy.dialects.postgresql import insert

        expires = sa.func.now() + sa.func.make_interval(
            0, 0, 0, 0, 0, 0, self.interval * EXPIRY_FACTOR
        )
        host = socket.gethostname()[:255]
        statement = insert(replica_report).values(
            replica=self.replica,
            host=host,
            pid=os.getpid(),
            started_at=sa.func.now(),
            seen_at=sa.func.now(),
            expires_at=expires,
            modules=self.modules,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[replica_report.c.replica],
            set_={"seen_at": sa.func.now(), "expires_at": expires, "modules": self.modules},
        )
        try:
            with self.engine.begin() as connection:
                if not sa.inspect(connection).has_table(replica_report.name):
                    self._warn("no tecnorev_replica table yet (the next upgrade creates it)")
                    return False
                connection.execute(statement)
                # reports long expired are nobody's: keep the table small
                connection.execute(
                    replica_report.delete().where(
                        replica_report.c.expires_at < sa.func.now() - sa.text("interval '1 day'")
                    )
                )
        except sa.exc.SQLAlchemyError as exc:
            self._warn(f"could not report this replica: {str(exc).splitlines()[0]}")
            return False
        self._warned = False
        return True

    def withdraw(self) -> None:
        try:
            with self.engine.begin() as connection:
                forget(connection, self.replica)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("could not withdraw replica %s: %s", self.replica, exc)

    def start(self) -> None:
        self.report()
        self._thread = threading.Thread(target=self._run, name="replica-report", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.withdraw()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def _warn(self, message: str) -> None:
        if not self._warned:
            log.warning("%s; retrying every %gs", message, self.interval)
            self._warned = True
