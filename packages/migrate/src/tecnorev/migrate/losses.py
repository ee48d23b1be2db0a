"""What a downgrade would drop, measured on the live database: the downgrade runs inside a
transaction that is rolled back (PostgreSQL and, through the migration engine, SQLite have
transactional DDL), and the catalog before and after is compared.  Reading the revisions'
operations instead would miss batch table rebuilds and hand-written SQL.

Rows the revisions themselves insert (seeded roles and permissions) come back with the next
upgrade, so they are not counted as lost: in the same rolled-back transaction the revisions
are applied again and what they insert is subtracted."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import sqlalchemy as sa
import typer
from alembic import command
from alembic.config import Config

from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.project import project


@dataclass(frozen=True)
class Loss:
    table: str
    column: str | None  # None: the whole table
    rows: int  # rows of the table (or with a value in the column) beyond those revisions seed

    def describe(self) -> str:
        what = f"column {self.table}.{self.column}" if self.column else f"table {self.table}"
        return f"{what}: {self.rows} row(s)" + (" with a value" if self.column else "")


def _counts(connection: sa.Connection, items: list[tuple[str, str | None]]) -> list[int]:
    present = _schema(connection)
    return [
        _count(connection, table, column)
        if table in present and (column is None or column in present[table])
        else 0
        for table, column in items
    ]


def _schema(connection: sa.Connection) -> dict[str, set[str]]:
    from tecnorev.migrate.verify import BOOKKEEPING_TABLES

    inspector = sa.inspect(connection)
    return {
        table: {c["name"] for c in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table not in BOOKKEEPING_TABLES and not table.startswith("sqlite_")
    }


def _count(connection: sa.Connection, table: str, column: str | None) -> int:
    preparer = connection.dialect.identifier_preparer
    query = f"SELECT count(*) FROM {preparer.quote(table)}"
    if column is not None:
        query += f" WHERE {preparer.quote(column)} IS NOT NULL"
    return int(connection.exec_driver_sql(query).scalar_one())


def _known(config: Config, revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        return ScriptDirectory.from_config(config).get_revision(revision) is not None
    except Exception:  # alembic's resolution errors: a revision the installed code lacks
        return False


def measure_losses(config: Config, target: str) -> list[Loss]:
    """The tables and columns ``downgrade target`` would drop, with their rows; nothing is
    changed."""
    from tecnorev.migrate.connect import check_connection
    from tecnorev.migrate.environment import database_url, migration_engine
    from tecnorev.migrate.helpers import REHEARSAL_ATTRIBUTE
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.scratch import quiet_alembic
    from tecnorev.migrate.state import recorded_versions
    from tecnorev.migrate.stepback import planned_step
    from tecnorev.migrate.stored import run_back

    registry = get_registry()

    engine = migration_engine(database_url(config))
    try:
        check_connection(engine)
        with engine.connect() as connection:
            outer = connection.begin()
            try:
                before = _schema(connection)
                # the environment runs inside a caller's transaction and never commits it
                config.attributes["connection"] = connection
                config.attributes[REHEARSAL_ATTRIBUTE] = True
                applied = recorded_versions(connection)
                trial = connection.begin_nested()
                try:
                    with quiet_alembic(config):
                        step = planned_step(config, connection, target, registry)
                        if step is not None:  # ahead of the code: its stored downgrade()s first
                            run_back(connection, step, registry)
                        command.downgrade(config, target)
                        after = _schema(connection)
                        dropped: list[tuple[str, str | None]] = [
                            (table, None) for table in sorted(before.keys() - after.keys())
                        ]
                        dropped += [
                            (table, column)
                            for table in sorted(before.keys() & after.keys())
                            for column in sorted(before[table] - after[table])
                        ]
                        for revision in sorted(applied):
                            if _known(config, revision):  # not the stored ones run back
                                command.upgrade(config, revision)
                        seeded = _counts(connection, dropped)
                finally:
                    config.attributes.pop("connection", None)
                    config.attributes.pop(REHEARSAL_ATTRIBUTE, None)
                    trial.rollback()
                held = _counts(connection, dropped)
                losses = [
                    Loss(table, column, max(rows - seeds, 0))
                    for (table, column), rows, seeds in zip(dropped, held, seeded, strict=True)
                ]
            finally:
                outer.rollback()
    finally:
        engine.dispose()
    return losses


class NotMeasured(MigrationError):
    """The downgrade could not be rehearsed, so what it would drop is not known."""


def _measured(config: Config, target: str) -> list[Loss]:
    from alembic.util import CommandError

    from tecnorev.migrate.errors import MigrateError

    try:
        return measure_losses(config, target)
    except (MigrateError, CommandError):
        raise  # a refusal or a failure the real run would meet too: said as it is
    except Exception as exc:
        # e.g. a revision with an autocommit_block of its own (tecnorev.migrate.helpers'
        # outside_transaction is the one a rehearsal can run)
        raise NotMeasured(
            f"what downgrade {target} would drop cannot be measured: rehearsing it in a "
            f"rolled-back transaction failed ({type(exc).__name__}: {str(exc).strip()})"
        ) from exc


def confirm_losses(config: Config, target: str, *, dry_run: bool, yes: bool) -> bool:
    """Whether ``downgrade target`` may run: with --dry-run never (the losses are listed);
    when it drops rows, or when that cannot be measured, only with --yes or a person's consent
    at a terminal."""
    try:
        losses = _measured(config, target)
    except NotMeasured as exc:
        if dry_run or not (yes or sys.stdin.isatty()):
            raise MigrationError(f"{exc}; pass --yes to run it anyway") from exc
        typer.echo(f"note: {exc}")
        return yes or typer.confirm("run it anyway?", default=False)
    holding = [loss for loss in losses if loss.rows]
    if dry_run:
        if not losses:
            typer.echo(f"downgrade {target} would drop no table or column")
        for loss in losses:
            typer.echo(f"would drop {loss.describe()}")
        if losses:
            typer.echo("(rows the revisions insert themselves are not counted)")
        typer.echo("nothing was changed (--dry-run)")
        return False
    if not holding:
        return True
    listed = "\n".join(f"  {loss.describe()}" for loss in holding)
    rows = sum(loss.rows for loss in holding)
    if yes:
        typer.echo(f"dropping {rows} row(s) (--yes):\n{listed}")
        return True
    if not sys.stdin.isatty():
        raise MigrationError(
            f"downgrade {target} would lose {rows} row(s):\n{listed}\n"
            f"refused without a terminal to ask: pass --yes to drop them, or back up first "
            f"('{project().command} upgrade --backup' makes one)"
        )
    typer.echo(f"downgrade {target} would lose {rows} row(s):\n{listed}")
    if not typer.confirm("drop them?", default=False):
        raise MigrationError(f"downgrade {target} cancelled: nothing was changed")
    return True
