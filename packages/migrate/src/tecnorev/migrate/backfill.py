"""Batched data changes: a backfill is declared by a revision and run after it, batch by batch.

A revision declares one inside its ``upgrade()``::

    backfill.declare("product_title", table="product", key="id", assign="title = name",
                     where="title IS NULL")

The declaration is a row of ``tecnorev_backfill`` written in the revision's own transaction,
so it exists exactly when the revision is applied (a downgrade of the revision removes it).
It runs after the revisions of the upgrade have committed (or with ``tecnorev db backfill
run``): each batch is one short transaction that updates the next ``batch_size`` keys and
records how far it got, so no lock is held beyond one batch and a process killed at any point
resumes, on the next run, after the last batch that committed.  Batches wait for row locks at
most the migration ``lock_timeout`` and are retried, so a busy row delays a backfill rather
than the application.  A contract revision is refused while a backfill before it is unfinished.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa

from tecnorev.migrate.errors import ConfigError, MigrationError
from tecnorev.migrate.ledger import ledger_metadata
from tecnorev.migrate.revisions import module_hint
from tecnorev.migrate.types import UTCDateTime, utcnow

DEFAULT_BATCH_SIZE = 1000
DEFAULT_PAUSE = 0.0  # seconds between batches

backfill_job = sa.Table(
    "tecnorev_backfill",
    ledger_metadata,
    sa.Column("revision", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("module", sa.String(64), nullable=True),
    sa.Column("table_name", sa.String(128), nullable=False),
    sa.Column("key_column", sa.String(128), nullable=False),
    sa.Column("assign", sa.Text, nullable=False),
    sa.Column("condition", sa.Text, nullable=True),
    # pending (nothing done yet), running (some batches done: resumes after the last), done
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("last_key", sa.Text, nullable=True),
    sa.Column("rows_scanned", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_total", sa.BigInteger, nullable=True),  # counted when it starts
    sa.Column("batches", sa.Integer, nullable=False, server_default="0"),
    sa.Column("declared_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("error", sa.String(1000), nullable=True),  # the last batch that failed, and why
)

PENDING, RUNNING, DONE = "pending", "running", "done"


def ensure_table(connection: sa.Connection) -> None:
    ledger_metadata.create_all(connection, tables=[backfill_job])


def has_table(connection: sa.Connection) -> bool:
    return sa.inspect(connection).has_table(backfill_job.name)


def _calling_revision() -> str:
    frame = sys._getframe(2)  # declare()'s caller: the revision's upgrade()
    revision = frame.f_globals.get("revision")
    if not isinstance(revision, str):
        raise MigrationError(
            "backfill.declare() is called from a revision's upgrade(); elsewhere pass "
            "revision=<the revision id>"
        )
    return revision


def declare(
    name: str,
    *,
    table: str,
    assign: str,
    key: str = "id",
    where: str | None = None,
    revision: str | None = None,
) -> None:
    """Declare a backfill of ``table``: ``UPDATE table SET <assign> [WHERE <where>]``, run in
    batches of keys (``key``: a single-column, unique, indexed key, the primary key usually).
    Called from a revision's ``upgrade()``; ``assign`` and ``where`` are SQL fragments."""
    from alembic import op

    revision = revision or _calling_revision()
    if not name or len(name) > 128:
        raise MigrationError(f"backfill name {name!r}: 1 to 128 characters")
    if op.get_context().as_sql:
        op.execute(sa.schema.CreateTable(backfill_job, if_not_exists=True))
    else:
        ensure_table(op.get_bind())
    op.execute(
        backfill_job.insert().values(
            revision=revision,
            name=name,
            module=module_hint(revision),
            table_name=table,
            key_column=key,
            assign=assign,
            condition=where,
            state=PENDING,
            declared_at=sa.func.current_timestamp(),
        )
    )


def forget_revision(connection: sa.Connection, revision: str) -> None:
    """A revision was reverted: its backfills go with it."""
    if has_table(connection):
        connection.execute(backfill_job.delete().where(backfill_job.c.revision == revision))


@dataclass(frozen=True)
class Backfill:
    revision: str
    name: str
    module: str | None
    table_name: str
    key_column: str
    assign: str
    condition: str | None
    state: str
    last_key: str | None
    rows_scanned: int
    rows_updated: int
    rows_total: int | None
    batches: int
    declared_at: datetime
    started_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    error: str | None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.revision})"

    @property
    def done(self) -> bool:
        return self.state == DONE

    def progress(self) -> str:
        if self.done:
            return f"done: {self.rows_updated:,} rows updated"
        if not self.rows_total:
            return "not started" if self.state == PENDING else f"{self.rows_scanned:,} rows"
        share = min(100.0, 100.0 * self.rows_scanned / self.rows_total)
        return f"{share:.0f}% ({self.rows_scanned:,} of about {self.rows_total:,} rows)"

    def to_json(self) -> dict[str, Any]:
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = value.isoformat()
        return values


def read(connection: sa.Connection | None) -> list[Backfill]:
    if connection is None or not has_table(connection):
        return []
    query = sa.select(backfill_job).order_by(backfill_job.c.declared_at, backfill_job.c.name)
    return [Backfill(**dict(row)) for row in connection.execute(query).mappings()]


def unfinished(connection: sa.Connection, revisions: Iterable[str] | None = None) -> list[Backfill]:
    wanted = None if revisions is None else set(revisions)
    return [b for b in read(connection) if not b.done and (wanted is None or b.revision in wanted)]


# -- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    batch_size: int = DEFAULT_BATCH_SIZE
    pause: float = DEFAULT_PAUSE
    lock_timeout_ms: int = 0  # per batch on PostgreSQL; 0 = the server's setting
    attempts: int = 1  # per batch, when it times out waiting for a lock


def pace(policy: Any = None, batch_size: int | None = None, pause: float | None = None) -> Pace:
    """The pace from the options given, else the settings; batches wait for locks as long as
    migration DDL does (``policy``: ``safety.LockTimeout``) and are retried as often."""
    enabled = policy is not None and policy.enabled
    return Pace(
        batch_size=batch_size or batch_size_setting(),
        pause=pause_setting() if pause is None else pause,
        lock_timeout_ms=policy.milliseconds if enabled else 0,
        attempts=policy.attempts if enabled else 1,
    )


def batch_size_setting() -> int:
    from tecnorev.migrate.project import project, setting

    raw = setting("BACKFILL_BATCH_SIZE")
    if raw and (not raw.isdigit() or int(raw) < 1):
        name = project().setting_name("BACKFILL_BATCH_SIZE")
        raise MigrationError(f"{name}={raw!r} is not a whole number of rows (1 or more)")
    return int(raw) if raw else DEFAULT_BATCH_SIZE


def pause_setting() -> float:
    from tecnorev.migrate.project import project, setting
    from tecnorev.migrate.safety import _DURATION, _UNIT_MS

    raw = setting("BACKFILL_PAUSE")
    if not raw:
        return DEFAULT_PAUSE
    match = _DURATION.match(raw.lower())
    if not match:
        name = project().setting_name("BACKFILL_PAUSE")
        raise ConfigError(f"{name}={raw!r} is not a duration: use e.g. 50ms, 0.2s or 0")
    return float(match.group(1)) * _UNIT_MS[match.group(2) or "s"] / 1000


def _q(connection: sa.Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def _key_type(connection: sa.Connection, job: Backfill) -> Callable[[str], Any]:
    for column in sa.inspect(connection).get_columns(job.table_name):
        if column["name"] == job.key_column:
            try:
                return column["type"].python_type
            except NotImplementedError:
                return str
    raise MigrationError(
        f"backfill {job.label}: table {job.table_name!r} has no column {job.key_column!r}"
    )


def _claim(connection: sa.Connection, job: Backfill) -> Backfill:
    """The job's row, locked for this batch: two runners never take the same keys."""
    query = sa.select(backfill_job).where(
        backfill_job.c.revision == job.revision, backfill_job.c.name == job.name
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).mappings().one_or_none()
    if row is None:
        raise MigrationError(f"backfill {job.label} is no longer declared (reverted?)")
    return Backfill(**dict(row))


def _one_batch(
    connection: sa.Connection, job: Backfill, pace: Pace, convert: Callable, inline: bool
) -> Backfill:
    """Run the next batch in one transaction (``inline``: a savepoint of the caller's);
    returns the job as it now stands."""
    with connection.begin_nested() if inline else connection.begin():
        if connection.dialect.name == "postgresql" and pace.lock_timeout_ms and not inline:
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(pace.lock_timeout_ms)}")
        job = _claim(connection, job)
        if job.done:
            return job
        table, key = _q(connection, job.table_name), _q(connection, job.key_column)
        after = "" if job.last_key is None else f" WHERE {key} > :last"
        params: dict[str, Any] = {"size": pace.batch_size}
        if job.last_key is not None:
            params["last"] = convert(job.last_key)
        now = utcnow()
        changes: dict[str, Any] = {"updated_at": now, "error": None}
        if job.state == PENDING:
            total = connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            changes.update(state=RUNNING, started_at=now, rows_total=total)
        bounds = connection.execute(
            sa.text(
                f"SELECT count(*), max(k) FROM (SELECT {key} AS k FROM {table}{after} "
                f"ORDER BY {key} LIMIT :size) AS batch"
            ),
            params,
        ).one()
        scanned, upper = bounds
        if not scanned:
            changes.update(state=DONE, finished_at=now)
        else:
            condition = f" AND ({job.condition})" if job.condition else ""
            lower = "" if job.last_key is None else f"{key} > :last AND "
            updated = connection.execute(
                sa.text(f"UPDATE {table} SET {job.assign} WHERE {lower}{key} <= :upper{condition}"),
                {**params, "upper": upper},
            ).rowcount
            changes.update(
                last_key=str(upper),
                rows_scanned=job.rows_scanned + scanned,
                rows_updated=job.rows_updated + max(updated, 0),
                batches=job.batches + 1,
            )
        connection.execute(
            backfill_job.update()
            .where(backfill_job.c.revision == job.revision, backfill_job.c.name == job.name)
            .values(**changes)
        )
    return Backfill(**{**job.__dict__, **changes})


def _is_lock_timeout(exc: sa.exc.DBAPIError) -> bool:
    return getattr(exc.orig, "pgcode", None) == "55P03"


def run_one(
    connection: sa.Connection,
    job: Backfill,
    pace: Pace,
    progress: Callable[[Backfill], None] = lambda _job: None,
    inline: bool = False,
) -> Backfill:
    """Run ``job`` to the end, batch after batch, resuming where it stood; ``inline``: inside
    the caller's transaction (SQLite's one-transaction upgrade), a savepoint per batch."""
    convert = _key_type(connection, job)
    if connection.in_transaction() and not inline:
        connection.commit()
    while not job.done:
        for attempt in range(1, pace.attempts + 1):
            try:
                job = _one_batch(connection, job, pace, convert, inline)
                break
            except sa.exc.DBAPIError as exc:
                if not _is_lock_timeout(exc) or attempt == pace.attempts:
                    if not inline:
                        _record_error(connection, job, exc)
                    raise MigrationError(
                        f"backfill {job.label} stopped at {job.progress()}: "
                        f"{str(exc.orig or exc).strip().splitlines()[0]}. Nothing of the failed "
                        "batch was kept; run it again to resume: "
                        f"tecnorev db backfill run {job.name}"
                    ) from exc
                time.sleep(min(2.0, 0.1 * 2**attempt))
        progress(job)
        if not job.done and pace.pause and not inline:
            time.sleep(pace.pause)
    return job


def _record_error(connection: sa.Connection, job: Backfill, exc: BaseException) -> None:
    if connection.in_transaction():
        connection.rollback()
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    try:
        with connection.begin():
            connection.execute(
                backfill_job.update()
                .where(backfill_job.c.revision == job.revision, backfill_job.c.name == job.name)
                .values(error=(message[0] if message else type(exc).__name__)[:1000])
            )
    except sa.exc.SQLAlchemyError:
        pass  # never hide the failure being reported


def run_pending(
    connection: sa.Connection,
    pace: Pace,
    names: Iterable[str] = (),
    out: IO[str] | None = None,
    inline: bool = False,
) -> list[Backfill]:
    """Run every unfinished backfill (or those named), oldest first."""
    wanted = set(names)
    declared = read(connection)
    if connection.in_transaction() and not inline:
        connection.commit()
    unknown = wanted - {j.name for j in declared}
    if unknown:
        raise MigrationError(f"no backfill named {', '.join(sorted(unknown))}")
    jobs = [j for j in declared if not j.done and (not wanted or j.name in wanted)]
    finished = []
    for job in jobs:
        with Progress(job, out or sys.stderr) as shown:
            finished.append(run_one(connection, job, pace, shown.update, inline))
    return finished


class Progress:
    """A progress line with rate and ETA: redrawn in place on a terminal, a line every few
    seconds otherwise (a log keeps a readable history)."""

    EVERY = 5.0

    def __init__(self, job: Backfill, out: IO[str]) -> None:
        self.job = job
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.first_scanned = job.rows_scanned
        self.shown_at = 0.0

    def __enter__(self) -> Progress:
        resumed = f", resuming after {self.job.last_key}" if self.job.last_key else ""
        self._line(f"backfill {self.job.label} on {self.job.table_name}{resumed}", final=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self._line(self._text(), final=True)
        elif self.tty:
            self.out.write("\n")

    def update(self, job: Backfill) -> None:
        self.job = job
        now = time.monotonic()
        if self.tty or now - self.shown_at >= self.EVERY:
            self.shown_at = now
            self._line(self._text(), final=False)

    def _text(self) -> str:
        job = self.job
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (job.rows_scanned - self.first_scanned) / elapsed
        text = f"  {job.name}: {job.progress()}, {rate:,.0f} rows/s"
        if job.done:
            return f"{text}, {elapsed:.1f}s"
        if job.rows_total and rate > 0:
            left = max(job.rows_total - job.rows_scanned, 0) / rate
            text += f", about {_duration(left)} left"
        if self.tty and job.rows_total:
            width = 24
            filled = math.floor(width * min(1.0, job.rows_scanned / job.rows_total))
            text = f"  [{'#' * filled}{'.' * (width - filled)}]" + text[1:]
        return text

    def _line(self, text: str, *, final: bool) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K{text}" + ("\n" if final else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
