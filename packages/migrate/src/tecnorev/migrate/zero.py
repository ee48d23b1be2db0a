"""Breaking changes in two phases, usable in revisions like Alembic's own operations.

A column rename is the first: the expand revision calls :func:`rename_column`, the contract
revision (``phase = "contract"``) calls :func:`complete_rename_column`::

    # expand
    def upgrade() -> None:
        zero.rename_column("product", "name", "title")

    def downgrade() -> None:
        zero.undo_rename_column("product", "name", "title")

    # contract
    phase = "contract"

    def upgrade() -> None:
        zero.complete_rename_column("product", "name", "title")

    def downgrade() -> None:
        zero.uncomplete_rename_column("product", "name", "title")

On PostgreSQL the expand adds the new column (nullable, same type), a trigger that copies every
write from one column to the other (the old release writes the old name, the new release the
new one, and each reads the other's writes), a ``NOT VALID`` check standing for NOT NULL, and a
batched backfill of the rows already there.  The contract validates the check, sets NOT NULL
(without a second scan: PostgreSQL 12+ uses the validated check), drops the trigger and the old
column.  Indexes and constraints on the old column are the author's to recreate on the new one
(an index with ``create_index_concurrently``, in an expand revision of its own).

On SQLite, one process with no rolling deploy, the expand renames the column and the contract
does nothing.
"""

from __future__ import annotations

import hashlib

from alembic import op

from tecnorev.migrate import backfill
from tecnorev.migrate.errors import MigrationError

_MAX_NAME = 63  # PostgreSQL's identifier length


def _name(kind: str, table: str, old: str, new: str) -> str:
    """A trigger, function or constraint name, unique per rename and within 63 bytes."""
    digest = hashlib.sha1(f"{table}.{old}.{new}".encode()).hexdigest()[:8]
    return f"tr_{kind}_{table}_{new}"[: _MAX_NAME - 9] + f"_{digest}"


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _q(name: str) -> str:
    return op.get_context().dialect.identifier_preparer.quote(name)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Everything below is SQL that reads the catalog itself, so the operations also render with
# ``--sql`` and under ``tecnorev db lint`` (neither has a database to ask).


def rename_column(
    table: str, old: str, new: str, *, key: str = "id", backfill_name: str | None = None
) -> None:
    """Expand: ``new`` beside ``old`` (same type), kept equal both ways while both releases
    run; ``key``: the single-column primary key the backfill walks."""
    if not _postgres():
        with op.batch_alter_table(table) as batch:
            batch.alter_column(old, new_column_name=new)
        return
    _add_like(table, source=old, column=new)
    _sync(table, old, new)
    _not_null_check_if(table, old, old, new)
    backfill.declare(
        backfill_name or f"{table}.{new}"[:128],
        table=table,
        key=key,
        assign=f"{_q(new)} = {_q(old)}",
        where=f"{_q(new)} IS DISTINCT FROM {_q(old)}",
        revision=_revision(),
    )


def undo_rename_column(table: str, old: str, new: str) -> None:
    """The expand's downgrade."""
    if not _postgres():
        with op.batch_alter_table(table) as batch:
            batch.alter_column(new, new_column_name=old)
        return
    _drop_sync(table, old, new)
    op.drop_column(table, new)


def complete_rename_column(table: str, old: str, new: str) -> None:
    """Contract: ``new`` alone (NOT NULL if ``old`` was), trigger and ``old`` gone."""
    if not _postgres():
        return
    t, n, check = _q(table), _q(new), _q(_name("nn", table, old, new))
    op.execute(
        f"""DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {_literal(t)}::regclass
             AND conname = {_literal(_name("nn", table, old, new))}) THEN
    ALTER TABLE {t} VALIDATE CONSTRAINT {check};
    ALTER TABLE {t} ALTER COLUMN {n} SET NOT NULL;
    ALTER TABLE {t} DROP CONSTRAINT {check};
  END IF;
END $$"""
    )
    _drop_sync(table, old, new)
    op.drop_column(table, old)


def uncomplete_rename_column(table: str, old: str, new: str) -> None:
    """The contract's downgrade: back to the expanded state (both columns, kept in sync)."""
    if not _postgres():
        return
    t, o, n = _q(table), _q(old), _q(new)
    _add_like(table, source=new, column=old)
    op.execute(f"UPDATE {t} SET {o} = {n}")
    _not_null_check_if(table, new, old, new)
    op.execute(
        f"""DO $$ BEGIN
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = {_literal(t)}::regclass
      AND attname = {_literal(new)}) THEN
    ALTER TABLE {t} ALTER COLUMN {o} SET NOT NULL;
    ALTER TABLE {t} ALTER COLUMN {n} DROP NOT NULL;
  END IF;
END $$"""
    )
    _sync(table, old, new)


def _add_like(table: str, *, source: str, column: str) -> None:
    """ADD COLUMN ``column`` of ``source``'s type, nullable."""
    t = _q(table)
    op.execute(
        f"""DO $$ BEGIN
  EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', {_literal(t)}, {_literal(column)},
    (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
     WHERE attrelid = {_literal(t)}::regclass AND attname = {_literal(source)}));
END $$"""
    )


def _not_null_check_if(table: str, source: str, old: str, new: str) -> None:
    """When ``source`` is NOT NULL: a check that ``new`` is not null either, NOT VALID (no scan
    now; the contract validates it, then SET NOT NULL needs no second scan)."""
    t = _q(table)
    op.execute(
        f"""DO $$ BEGIN
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = {_literal(t)}::regclass
      AND attname = {_literal(source)}) THEN
    ALTER TABLE {t} ADD CONSTRAINT {_q(_name("nn", table, old, new))}
      CHECK ({_q(new)} IS NOT NULL) NOT VALID;
  END IF;
END $$"""
    )


def _sync(table: str, old: str, new: str) -> None:
    """The trigger keeping ``old`` and ``new`` equal, whichever release writes."""
    t, o, n = _q(table), _q(old), _q(new)
    function, trigger = _q(_name("fn", table, old, new)), _q(_name("sync", table, old, new))
    # INSERT: whichever release wrote fills the other column.  UPDATE: the column that changed
    # wins (the old release changes only the old one, the new release only the new one).
    op.execute(
        f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSE NEW.{o} := NEW.{n}; END IF;
  ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN
    NEW.{n} := NEW.{o};
  ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN
    NEW.{o} := NEW.{n};
  END IF;
  RETURN NEW;
END $$"""
    )
    op.execute(
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {t} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def _drop_sync(table: str, old: str, new: str) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {_q(_name('sync', table, old, new))} ON {_q(table)}")
    op.execute(f"DROP FUNCTION IF EXISTS {_q(_name('fn', table, old, new))}()")


def _revision() -> str:
    """The id of the revision whose upgrade() called the operation (two frames up)."""
    import sys

    frame = sys._getframe(2)
    revision = frame.f_globals.get("revision")
    if not isinstance(revision, str):
        raise MigrationError("zero's operations are called from a revision's upgrade()")
    return revision
