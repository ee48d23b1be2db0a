"""Breaking changes in two phases, usable in revisions like Alembic's own operations.

Each change is a pair: the expand revision calls the operation, the contract revision
(``phase = "contract"``) its ``complete_`` counterpart; ``undo_`` and ``uncomplete_`` are their
downgrades.  A column rename::

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

On PostgreSQL, between the two phases the old release and the new one run side by side, and
each sees the other's writes:

* :func:`rename_column`: the new column (nullable, same type) beside the old one, a trigger
  copying every write from one to the other, a ``NOT VALID`` check standing for NOT NULL and a
  batched backfill; the contract validates the check, sets NOT NULL (no second scan on
  PostgreSQL 12+), drops the trigger and the old column.
* :func:`change_column_type`: both releases keep the column's name; a hidden shadow column of
  the new type is kept equal to it (converted by ``using``) by a trigger and backfilled; the
  contract swaps the shadow in under the column's name (its default and owned sequences
  follow).
* :func:`set_not_null`: a trigger gives NULLs written by the old release the ``fill`` value, a
  ``NOT VALID`` check keeps new NULLs out, a backfill fills the rows already there; the contract
  validates and sets NOT NULL.
* :func:`drop_column`: the expand only lifts NOT NULL (a column without a default must not
  stop the new release, which no longer writes it, from inserting); the contract drops it.
* :func:`rename_table`: the table takes its new name and a view under the old one serves the
  old release (a single-table view: PostgreSQL passes its reads, writes and ``FOR UPDATE``
  through to the table, with the table's defaults); the contract drops the view.

A contract that would drop a column some index or constraint needs (other than the checks
these operations add) stops with the list: create the equivalent on the new column first
(``create_index_concurrently`` in an expand revision of its own), since dropping them silently
would lose a uniqueness rule or make a query slow.

On SQLite, one process with no rolling deploy, the expand makes the change at once and the
contract does nothing (a dropped column goes in the contract, which runs in the same upgrade).
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
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
    _drop_trigger(table, old, new)
    op.drop_column(table, new)


def complete_rename_column(table: str, old: str, new: str) -> None:
    """Contract: ``new`` alone (NOT NULL if ``old`` was), trigger and ``old`` gone."""
    if not _postgres():
        return
    _validate_not_null(table, _name("nn", table, old, new), new)
    _drop_trigger(table, old, new)
    _move_default_and_sequences(table, source=old, target=new)
    _refuse_losing_dependents(table, old)
    op.drop_column(table, old)


def uncomplete_rename_column(table: str, old: str, new: str) -> None:
    """The contract's downgrade: back to the expanded state (both columns, kept in sync)."""
    if not _postgres():
        return
    t, o, n = _q(table), _q(old), _q(new)
    _add_like(table, source=new, column=old)
    op.execute(f"UPDATE {t} SET {o} = {n}")
    _move_default_and_sequences(table, source=new, target=old)
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


def _not_null_check_if(
    table: str, source: str, old: str, new: str, *, target: str | None = None
) -> None:
    """When ``source`` is NOT NULL: a check that ``target`` (``new`` by default) is not null
    either, NOT VALID (no scan now; the contract validates it, then SET NOT NULL needs no
    second scan)."""
    t = _q(table)
    op.execute(
        f"""DO $$ BEGIN
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = {_literal(t)}::regclass
      AND attname = {_literal(source)}) THEN
    ALTER TABLE {t} ADD CONSTRAINT {_q(_name("nn", table, old, new))}
      CHECK ({_q(target or new)} IS NOT NULL) NOT VALID;
  END IF;
END $$"""
    )


def _sync(table: str, old: str, new: str) -> None:
    """The trigger keeping ``old`` and ``new`` equal, whichever release writes."""
    o, n = _q(old), _q(new)
    # INSERT: whichever release wrote fills the other column.  UPDATE: the column that changed
    # wins (the old release changes only the old one, the new release only the new one); an
    # update of other columns fills a row the backfill has not reached, which the NOT NULL
    # check would refuse otherwise.
    _trigger(
        table,
        old,
        new,
        f"""IF TG_OP = 'INSERT' THEN
    IF NEW.{n} IS NULL THEN NEW.{n} := NEW.{o}; ELSE NEW.{o} := NEW.{n}; END IF;
  ELSIF NEW.{o} IS DISTINCT FROM OLD.{o} THEN
    NEW.{n} := NEW.{o};
  ELSIF NEW.{n} IS DISTINCT FROM OLD.{n} THEN
    NEW.{o} := NEW.{n};
  ELSIF NEW.{n} IS NULL THEN
    NEW.{n} := NEW.{o};
  END IF;""",
    )


def _revision() -> str:
    """The id of the revision whose upgrade() called the operation (two frames up)."""
    import sys

    frame = sys._getframe(2)
    revision = frame.f_globals.get("revision")
    if not isinstance(revision, str):
        raise MigrationError("zero's operations are called from a revision's upgrade()")
    return revision


# -- change a column's type ---------------------------------------------------------------


def shadow_column(table: str, column: str) -> str:
    """The hidden column :func:`change_column_type` fills with the new type."""
    digest = hashlib.sha1(f"{table}.{column}".encode()).hexdigest()[:8]
    return column[: _MAX_NAME - 12] + f"_tr_{digest}"


def is_shadow_column(name: str) -> bool:
    tail = name[-12:]
    return len(name) > 12 and tail[:4] == "_tr_" and all(c in "0123456789abcdef" for c in tail[4:])


def change_column_type(
    table: str,
    column: str,
    type_: str,
    *,
    using: str | None = None,
    key: str = "id",
    backfill_name: str | None = None,
) -> None:
    """Expand: a shadow column of ``type_`` (SQL, e.g. ``"bigint"``) equal, for every row and
    whichever release writes, to ``using`` (an SQL expression over the row's columns, as in
    ``ALTER ... USING``; a cast by default).  Both releases go on using ``column``."""
    if not _postgres():
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=_type(type_))
        return
    conversion = using or f"CAST({_q(column)} AS {type_})"
    t, s = _q(table), _q(shadow_column(table, column))
    op.execute(f"ALTER TABLE {t} ADD COLUMN {s} {type_}")
    _type_sync(table, column, conversion)
    _not_null_check_if(table, column, column, "type", target=shadow_column(table, column))
    backfill.declare(
        backfill_name or f"{table}.{column}:type"[:128],
        table=table,
        key=key,
        assign=f"{s} = ({conversion})",
        where=f"{s} IS DISTINCT FROM ({conversion})",
        revision=_revision(),
    )


def undo_change_column_type(table: str, column: str, *, old_type: str) -> None:
    """The expand's downgrade (on SQLite the column goes back to ``old_type``)."""
    if not _postgres():
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=_type(old_type))
        return
    _drop_trigger(table, column, "type")
    op.drop_column(table, shadow_column(table, column))


def complete_change_column_type(table: str, column: str) -> None:
    """Contract: the shadow (NOT NULL if the column was) takes the column's name, default and
    owned sequences; the old column goes."""
    if not _postgres():
        return
    shadow = shadow_column(table, column)
    _validate_not_null(table, _name("nn", table, column, "type"), shadow)
    _drop_trigger(table, column, "type")
    _move_default_and_sequences(table, source=column, target=shadow)
    _refuse_losing_dependents(table, column)
    op.drop_column(table, column)
    op.alter_column(table, shadow, new_column_name=column)


def uncomplete_change_column_type(
    table: str,
    column: str,
    type_: str,
    *,
    old_type: str,
    using: str | None = None,
    back: str | None = None,
) -> None:
    """The contract's downgrade, given the expand's arguments: the column of ``old_type``
    again (``back``: the expression converting the values back, over ``column``; a cast by
    default), the new-type values in the shadow, kept in sync."""
    if not _postgres():
        return
    shadow = shadow_column(table, column)
    t, c, s = _q(table), _q(column), _q(shadow)
    op.alter_column(table, column, new_column_name=shadow)
    op.execute(f"ALTER TABLE {t} ADD COLUMN {c} {old_type}")
    back = back or f"CAST({c} AS {old_type})"
    op.execute(f"UPDATE {t} SET {c} = (SELECT {back} FROM (SELECT {t}.{s} AS {c}) AS _row)")
    _move_default_and_sequences(table, source=shadow, target=column)
    op.execute(
        f"""DO $$ BEGIN
  IF (SELECT attnotnull FROM pg_attribute WHERE attrelid = {_literal(t)}::regclass
      AND attname = {_literal(shadow)}) THEN
    ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;
    ALTER TABLE {t} ALTER COLUMN {s} DROP NOT NULL;
    ALTER TABLE {t} ADD CONSTRAINT {_q(_name("nn", table, column, "type"))}
      CHECK ({s} IS NOT NULL) NOT VALID;
  END IF;
END $$"""
    )
    _type_sync(table, column, using or f"CAST({c} AS {type_})")


def _type_sync(table: str, column: str, conversion: str) -> None:
    shadow = _q(shadow_column(table, column))
    _trigger(
        table,
        column,
        "type",
        # on every update, not only of the column: a row the backfill has not reached yet
        # must not reach the shadow's NOT NULL check empty
        f"NEW.{shadow} := {_row_expression(conversion)};",
    )


# -- make an existing column NOT NULL -------------------------------------------------------


def set_not_null(
    table: str, column: str, *, fill: str, key: str = "id", backfill_name: str | None = None
) -> None:
    """Expand: NULLs written to ``column`` (by the release that does not know it yet) become
    ``fill`` (an SQL expression over the row's columns, e.g. ``"'each'"``), a ``NOT VALID``
    check keeps NULLs out, and a backfill fills the rows already there."""
    if not _postgres():
        t, c = _q(table), _q(column)
        op.execute(f"UPDATE {t} SET {c} = {fill} WHERE {c} IS NULL")
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, nullable=False)
        return
    _fill_nulls(table, column, fill)
    c = _q(column)
    op.execute(
        f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(_name('nn', table, column, 'notnull'))} "
        f"CHECK ({c} IS NOT NULL) NOT VALID"
    )
    backfill.declare(
        backfill_name or f"{table}.{column}:not-null"[:128],
        table=table,
        key=key,
        assign=f"{c} = ({fill})",
        where=f"{c} IS NULL",
        revision=_revision(),
    )


def undo_set_not_null(table: str, column: str) -> None:
    """The expand's downgrade (the values filled in stay)."""
    if not _postgres():
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, nullable=True)
        return
    check = _q(_name("nn", table, column, "notnull"))
    op.execute(f"ALTER TABLE {_q(table)} DROP CONSTRAINT IF EXISTS {check}")
    _drop_trigger(table, column, "notnull")


def complete_set_not_null(table: str, column: str) -> None:
    """Contract: the check validated (a scan that blocks no writes), then SET NOT NULL without
    a second scan; the check and the trigger go."""
    if not _postgres():
        return
    _validate_not_null(table, _name("nn", table, column, "notnull"), column)
    _drop_trigger(table, column, "notnull")


def uncomplete_set_not_null(table: str, column: str, *, fill: str) -> None:
    """The contract's downgrade: back to the expanded state."""
    if not _postgres():
        return
    t, c = _q(table), _q(column)
    op.execute(f"ALTER TABLE {t} ALTER COLUMN {c} DROP NOT NULL")
    op.execute(
        f"ALTER TABLE {t} ADD CONSTRAINT {_q(_name('nn', table, column, 'notnull'))} "
        f"CHECK ({c} IS NOT NULL) NOT VALID"
    )
    _fill_nulls(table, column, fill)


def _fill_nulls(table: str, column: str, fill: str) -> None:
    c = _q(column)
    _trigger(
        table,
        column,
        "notnull",
        f"IF NEW.{c} IS NULL THEN NEW.{c} := {_row_expression(fill)}; END IF;",
    )


# -- drop a column --------------------------------------------------------------------------


def drop_column(table: str, column: str) -> None:
    """Expand: the column stays for the old release, but without NOT NULL unless it has a
    default, so that the new release, which no longer writes it, can insert."""
    if not _postgres():
        return
    t = _q(table)
    op.execute(
        f"""DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {_literal(t)}::regclass
             AND attname = {_literal(column)} AND attnotnull AND NOT atthasdef) THEN
    ALTER TABLE {t} ALTER COLUMN {_q(column)} DROP NOT NULL;
  END IF;
END $$"""
    )


def undo_drop_column(table: str, column: str, *, fill: str | None = None) -> None:
    """The expand's downgrade: with ``fill``, the rows the new release inserted get it and the
    column is NOT NULL again (without it, the column stays nullable)."""
    if not _postgres() or fill is None:
        return
    t, c = _q(table), _q(column)
    op.execute(f"UPDATE {t} SET {c} = {fill} WHERE {c} IS NULL")
    op.execute(f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL")


def complete_drop_column(table: str, column: str) -> None:
    """Contract: the column is dropped, with the indexes and constraints on it alone."""
    if not _postgres():  # a batch copes with SQLite's limits on DROP COLUMN
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
        return
    op.drop_column(table, column)


def uncomplete_drop_column(table: str, column: str, type_: str, *, fill: str | None = None) -> None:
    """The contract's downgrade: the column back (nullable; its values were dropped, so every
    row gets ``fill``, NULL by default)."""
    t, c = _q(table), _q(column)
    op.execute(f"ALTER TABLE {t} ADD COLUMN {c} {type_}")
    if fill is not None:
        op.execute(f"UPDATE {t} SET {c} = {fill}")


# -- rename a table -------------------------------------------------------------------------


def rename_table(old: str, new: str) -> None:
    """Expand: the table takes its new name; a view under the old name serves the old release
    (reads, writes and row locks pass through it to the table)."""
    op.rename_table(old, new)
    if _postgres():
        op.execute(f"CREATE VIEW {_q(old)} AS SELECT * FROM {_q(new)}")


def undo_rename_table(old: str, new: str) -> None:
    if _postgres():
        op.execute(f"DROP VIEW IF EXISTS {_q(old)}")
    op.rename_table(new, old)


def complete_rename_table(old: str, new: str) -> None:
    """Contract: the view goes."""
    if _postgres():
        op.execute(f"DROP VIEW IF EXISTS {_q(old)}")


def uncomplete_rename_table(old: str, new: str) -> None:
    if _postgres():
        op.execute(f"CREATE VIEW {_q(old)} AS SELECT * FROM {_q(new)}")


# -- shared pieces ----------------------------------------------------------------------------


class _SQLType(sa.types.UserDefinedType[object]):
    """A type given as SQL text, rendered as written (SQLite's batch mode wants a type object)."""

    cache_ok = True

    def __init__(self, sql: str) -> None:
        self.sql = sql

    def get_col_spec(self, **kw: object) -> str:
        return self.sql


def _type(sql: str) -> _SQLType:
    return _SQLType(sql)


def _row_expression(expression: str) -> str:
    """``expression`` (over a row's columns by name) evaluated on a trigger's NEW row."""
    return f"(SELECT {expression} FROM (SELECT NEW.*) AS _row)"


def _trigger(table: str, column: str, kind: str, body: str) -> None:
    function, trigger = _q(_name("fn", table, column, kind)), _q(_name("sync", table, column, kind))
    op.execute(
        f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  {body}
  RETURN NEW;
END $$"""
    )
    op.execute(
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {_q(table)} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()"
    )


def _drop_trigger(table: str, column: str, kind: str) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {_q(_name('sync', table, column, kind))} ON {_q(table)}")
    op.execute(f"DROP FUNCTION IF EXISTS {_q(_name('fn', table, column, kind))}()")


def _validate_not_null(table: str, check: str, column: str) -> None:
    """VALIDATE the NOT VALID check (if the expand added one), SET NOT NULL, drop the check."""
    t = _q(table)
    op.execute(
        f"""DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {_literal(t)}::regclass
             AND conname = {_literal(check)}) THEN
    ALTER TABLE {t} VALIDATE CONSTRAINT {_q(check)};
    ALTER TABLE {t} ALTER COLUMN {_q(column)} SET NOT NULL;
    ALTER TABLE {t} DROP CONSTRAINT {_q(check)};
  END IF;
END $$"""
    )


def _move_default_and_sequences(table: str, *, source: str, target: str) -> None:
    """``source``'s default and the sequences it owns (a serial's) move to ``target``, so that
    dropping ``source`` loses neither."""
    t = _q(table)
    op.execute(
        f"""DO $$ DECLARE d text; seq regclass; BEGIN
  SELECT pg_get_expr(ad.adbin, ad.adrelid) INTO d FROM pg_attrdef ad
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    WHERE ad.adrelid = {_literal(t)}::regclass AND a.attname = {_literal(source)};
  IF d IS NOT NULL THEN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %s', {_literal(t)},
                   {_literal(target)}, d);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP DEFAULT', {_literal(t)},
                   {_literal(source)});
  END IF;
  FOR seq IN SELECT dep.objid::regclass FROM pg_depend dep
      JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
      WHERE dep.refobjid = {_literal(t)}::regclass AND a.attname = {_literal(source)}
        AND dep.classid = 'pg_class'::regclass AND dep.deptype = 'a'
        AND (SELECT relkind FROM pg_class WHERE oid = dep.objid) = 'S' LOOP
    EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, {_literal(t)}, {_literal(target)});
  END LOOP;
END $$"""
    )


def _refuse_losing_dependents(table: str, column: str) -> None:
    """Stop before dropping ``column`` would silently take an index, constraint or sequence
    with it (a uniqueness rule lost, a query slow); the checks added here are gone by then."""
    t = _q(table)
    op.execute(
        f"""DO $$ DECLARE found text; BEGIN
  SELECT string_agg(DISTINCT pg_describe_object(dep.classid, dep.objid, 0), ', ') INTO found
    FROM pg_depend dep
    JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
    WHERE dep.refobjid = {_literal(t)}::regclass AND a.attname = {_literal(column)}
      AND dep.classid IN ('pg_class'::regclass, 'pg_constraint'::regclass)
      AND dep.deptype IN ('a', 'n');
  IF found IS NOT NULL THEN
    RAISE EXCEPTION 'dropping column %.% would also drop: %', {_literal(table)},
      {_literal(column)}, found
      USING HINT = 'create their equivalents on the new column first (an index with '
        'create_index_concurrently, in an expand revision of its own), or drop them in this '
        'revision on purpose';
  END IF;
END $$"""
    )
