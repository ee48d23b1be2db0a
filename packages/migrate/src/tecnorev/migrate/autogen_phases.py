"""``generate`` writes breaking changes as an expand revision and a contract revision.

Autogenerate sees a renamed column as one column dropped and one added, and writes a type
change, NOT NULL on an existing column and a dropped column as single ``alter_column`` /
``drop_column`` steps that break the release still running during a rolling deploy.  Here each
of those becomes a call of :mod:`tecnorev.migrate.zero` in the expand revision and its
``complete_`` counterpart in a second, contract revision written after it:

* one column dropped and one added, of the same type, in the same table: a rename (unless
  ``--no-renames``: then a drop and an add);
* a type change PostgreSQL would rewrite the table for: ``change_column_type``;
* NOT NULL on an existing column: ``set_not_null``, filling NULLs with the column's server
  default or scalar default; without either there is no value to fill with, and generation
  stops with the recipe;
* a column dropped: ``drop_column``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.operations import MigrateOperation, ops
from alembic.util import CommandError
from sqlalchemy.dialects import postgresql

from tecnorev.migrate.lint import _rewrites

PHASES = "tecnorev_phases"  # the config attribute holding a Phases for autogenerate


@dataclass
class Phases:
    """What ``generate`` asks for (``renames``) and learns (contract ids, what was read)."""

    renames: bool = True
    contract: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)


class ZeroCall(MigrateOperation):
    """``zero.<function>(*args, **kwargs)`` in a revision; ``undo``: the call reversing it."""

    def __init__(
        self, function: str, *args: str, undo: ZeroCall | None = None, **kwargs: str
    ) -> None:
        self.function, self.args, self.kwargs, self.undo = function, args, kwargs, undo

    def reverse(self) -> ZeroCall:
        if self.undo is None:
            raise NotImplementedError(f"zero.{self.function} has no reverse")
        return self.undo


@renderers.dispatch_for(ZeroCall)
def _render(autogen_context: Any, call: ZeroCall) -> str:
    autogen_context.imports.add("from tecnorev.migrate import zero")
    arguments = [repr(a) for a in call.args] + [f"{k}={v!r}" for k, v in call.kwargs.items()]
    return f"zero.{call.function}({', '.join(arguments)})"


def _phases(
    expand: ZeroCall, undo: ZeroCall, contract: ZeroCall, uncontract: ZeroCall
) -> tuple[ZeroCall, ZeroCall]:
    """The expand call and the contract call of one change, each knowing its downgrade."""
    expand.undo, contract.undo = undo, uncontract
    return expand, contract


Z = ZeroCall


def _sql_type(type_: Any) -> str:
    return sa.types.to_instance(type_).compile(dialect=postgresql.dialect())


def _fill(table: str, column: str, metadata: list[sa.MetaData]) -> str:
    """The SQL value NULLs get when ``column`` becomes NOT NULL: its default in the models."""
    for data in metadata:
        model = data.tables.get(table)
        if model is None or column not in model.c:
            continue
        col = model.c[column]
        if isinstance(col.server_default, sa.DefaultClause):
            arg = col.server_default.arg
            return arg.text if isinstance(arg, sa.TextClause) else _literal(arg, col.type)
        if isinstance(col.default, sa.ColumnDefault) and col.default.is_scalar:
            return _literal(col.default.arg, col.type)
    raise CommandError(
        f"{table}.{column} becomes NOT NULL, and the models give it no default to fill the "
        "rows (and the old release's inserts) that have none. Give it a server_default or a "
        "scalar default, or write the pair by hand (generate --empty, twice): in the expand "
        f'revision zero.set_not_null("{table}", "{column}", fill="<SQL value>"), in the '
        f'contract revision (phase = "contract") zero.complete_set_not_null("{table}", '
        f'"{column}")'
    )


def _literal(value: Any, type_: Any) -> str:
    compiled = sa.literal(value, type_).compile(
        dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
    )
    return str(compiled)


def _alter(
    step: ops.AlterColumnOp, metadata: list[sa.MetaData], said: list[str]
) -> tuple[list[MigrateOperation], list[MigrateOperation]]:
    """An ``alter_column`` as (expand, contract): a rewriting type change and NOT NULL become
    two-phase calls; what is left (a default, a comment, a widening) stays as it was."""
    table, column = step.table_name, step.column_name
    expand: list[MigrateOperation] = []
    contract: list[MigrateOperation] = []
    retype = step.modify_type is not None and _rewrites(step.existing_type, step.modify_type)
    not_null = step.modify_nullable is False and step.existing_nullable is not False
    if retype and not_null:
        raise CommandError(
            f"{table}.{column} changes type and becomes NOT NULL: make one of the changes in "
            "this release and the other in the next"
        )
    if retype:
        new, old = _sql_type(step.modify_type), _sql_type(step.existing_type)
        pair = _phases(
            Z("change_column_type", table, column, new),
            Z("undo_change_column_type", table, column, old_type=old),
            Z("complete_change_column_type", table, column),
            Z("uncomplete_change_column_type", table, column, new, old_type=old),
        )
        expand.append(pair[0])
        contract.append(pair[1])
        said.append(f"{table}.{column} changes type ({old} to {new})")
        step.modify_type = None
    if not_null:
        fill = _fill(table, column, metadata)
        pair = _phases(
            Z("set_not_null", table, column, fill=fill),
            Z("undo_set_not_null", table, column),
            Z("complete_set_not_null", table, column),
            Z("uncomplete_set_not_null", table, column, fill=fill),
        )
        expand.append(pair[0])
        contract.append(pair[1])
        said.append(f"{table}.{column} becomes NOT NULL (NULLs filled with {fill})")
        step.modify_nullable = None
    if step.has_changes():
        expand.insert(0, step)
    return expand, contract


def _split(
    table: ops.ModifyTableOps, metadata: list[sa.MetaData], renames: bool, said: list[str]
) -> tuple[list[MigrateOperation], list[MigrateOperation]]:
    """One table's steps as (expand, contract)."""
    name = table.table_name
    expand: list[MigrateOperation] = []
    contract: list[MigrateOperation] = []
    added = [o for o in table.ops if isinstance(o, ops.AddColumnOp)]
    dropped = [o for o in table.ops if isinstance(o, ops.DropColumnOp)]
    rename = None
    if (
        renames
        and len(added) == 1
        and len(dropped) == 1
        and _sql_type(dropped[0].to_column().type) == _sql_type(added[0].column.type)
    ):
        rename = (dropped[0], added[0])
    for step in table.ops:
        if rename is not None and step is rename[1]:
            continue
        if rename is not None and step is rename[0]:
            old, new = rename[0].column_name, rename[1].column.name
            pair = _phases(
                Z("rename_column", name, old, new),
                Z("undo_rename_column", name, old, new),
                Z("complete_rename_column", name, old, new),
                Z("uncomplete_rename_column", name, old, new),
            )
            expand.append(pair[0])
            contract.append(pair[1])
            said.append(f"{name}.{old} renamed to {new} (a column of the same type dropped "
                        "and one added; --no-renames if it is not)")  # fmt: skip
        elif isinstance(step, ops.DropColumnOp):
            column, old_type = step.column_name, _sql_type(step.to_column().type)
            pair = _phases(
                Z("drop_column", name, column),
                Z("undo_drop_column", name, column),
                Z("complete_drop_column", name, column),
                Z("uncomplete_drop_column", name, column, old_type),
            )
            expand.append(pair[0])
            contract.append(pair[1])
            said.append(f"{name}.{column} dropped")
        elif isinstance(step, ops.AlterColumnOp):
            more, later = _alter(step, metadata, said)
            expand.extend(more)
            contract.extend(later)
        else:
            expand.append(step)
    return expand, contract


def split_phases(
    script: ops.MigrationScript, metadata: list[sa.MetaData], *, renames: bool = True
) -> tuple[ops.MigrationScript | None, list[str]]:
    """Rewrite ``script`` as its expand revision; return the contract revision to write after
    it (None when nothing breaks the running release) and what was read as what."""
    assert script.upgrade_ops is not None  # the caller splits a script that has upgrade ops
    said: list[str] = []
    expand_ops: list[MigrateOperation] = []
    contract_ops: list[MigrateOperation] = []
    for step in script.upgrade_ops.ops:
        if not isinstance(step, ops.ModifyTableOps):
            expand_ops.append(step)
            continue
        now, later = _split(step, metadata, renames, said)
        # zero's calls stand outside the table's block, which SQLite renders as a batch
        kept = [o for o in now if not isinstance(o, ZeroCall)]
        if kept:
            expand_ops.append(ops.ModifyTableOps(step.table_name, kept, schema=step.schema))
        expand_ops.extend(o for o in now if isinstance(o, ZeroCall))
        contract_ops.extend(later)
    if not contract_ops:
        return None, said
    expand = ops.UpgradeOps(expand_ops)
    script.upgrade_ops = expand
    script.downgrade_ops = expand.reverse()
    upgrade = ops.UpgradeOps(contract_ops)
    contract = ops.MigrationScript(
        rev_id=None,
        message=f"{script.message} (contract)" if script.message else "contract",
        upgrade_ops=upgrade,
        downgrade_ops=upgrade.reverse(),
        head=None,
        version_path=script.version_path,
    )
    return contract, said
