"""``tecnorev db lint``: what a revision would do to a big PostgreSQL table in production.

Each revision's ``upgrade()`` runs against a recording ``Operations`` in offline mode with the
PostgreSQL dialect (never against a database), so the rules see the real Alembic operation
objects, batch operations included, and SQL handed to ``op.execute`` or to the bind is read into
the same operations.  Every finding names the file and line of ``upgrade()`` that caused it.

A finding reviewed and accepted is acknowledged in the migration file, with a reason::

    op.drop_column("product", "legacy_code")  # tecnorev: allow TR105 unread since 2.3

(the comment may also sit on its own line right above the statement), or for the whole file::

    lint_allow = {"TR103": "the table holds a few hundred rows"}

Tables created in the same revision are new and empty: what is done to them is never flagged.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import re
import sys
import tokenize
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.ddl.postgresql import CreateExcludeConstraintOp
from alembic.operations import BatchOperations, Operations, ops
from alembic.operations.base import AbstractOperations
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.util import load_python_file
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import sqltypes

from tecnorev.migrate import helpers, zero
from tecnorev.migrate.project import project

if TYPE_CHECKING:
    from alembic.script import Script

__all__ = [
    "RULES",
    "Finding",
    "Rule",
    "blocking",
    "findings_json",
    "format_findings",
    "lint_module",
    "lint_paths",
    "lint_revision",
]

# The rules are about PostgreSQL: every revision is read as it would run there.
_PG = postgresql.dialect()


# --------------------------------------------------------------------------- the rules


@dataclass(frozen=True)
class Seen:
    """One operation ``upgrade()`` issued, and where."""

    operation: ops.MigrateOperation
    line: int | None
    in_autocommit: bool
    via_helper: bool
    new_tables: frozenset[str]  # created earlier in this revision, so new and empty
    from_sql: bool = False  # read from SQL text rather than issued as an operation

    @property
    def table(self) -> str | None:
        """The (schema-qualified) table the operation changes."""
        op = self.operation
        if isinstance(op, ops.CreateForeignKeyOp):
            return _qualified(op.source_table, op.kw.get("source_schema"))
        name = getattr(op, "table_name", None)
        return _qualified(name, getattr(op, "schema", None)) if name else None

    @property
    def on_existing_table(self) -> bool:
        return self.table is not None and _table_key(self.table) not in self.new_tables

    @property
    def where(self) -> str:
        return " (in SQL)" if self.from_sql else ""


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    why: str
    instead: str
    # Yields one message per problem in an operation (seeing the whole revision too); None
    # for what the linter itself reports (an unreadable upgrade(), a bad acknowledgement).
    check: Callable[[Seen, Sequence[Seen]], Iterator[str]] | None = None
    acknowledgeable: bool = True


@dataclass
class AlterEnumValueOp(ops.MigrateOperation):
    """``ALTER TYPE ... ADD VALUE`` / ``RENAME VALUE`` read from SQL (Alembic has no op)."""

    type_name: str
    action: str


@dataclass
class ValidateConstraintOp(ops.MigrateOperation):
    """``ALTER TABLE ... VALIDATE CONSTRAINT`` read from SQL (Alembic has no op)."""

    table_name: str
    constraint_name: str
    schema: str | None = None


# Findings a contract revision is made for: it runs only once no replica of a release that
# used the column or table is left (``tecnorev db contract``).
CONTRACT_PHASE_ALLOWS = frozenset({"TR105", "TR106"})


def _before(seen: Seen, revision: Sequence[Seen]) -> Sequence[Seen]:
    """What the revision did before ``seen``."""
    return revision[: next(i for i, s in enumerate(revision) if s is seen)]


def _same_name(a: Any, b: Any) -> bool:
    return (
        a is not None and b is not None and str(a).strip('"').lower() == str(b).strip('"').lower()
    )


def _adds_constraint(seen: Seen, name: str) -> bool:
    op = seen.operation
    # every AddConstraintOp alembic makes has a constraint_name; the base class declares none
    return isinstance(op, ops.AddConstraintOp) and _same_name(
        getattr(op, "constraint_name", None), name
    )


def _table_key(qualified: str) -> str:
    return ".".join(part.strip('"') for part in qualified.lower().split("."))


def _qualified(table: str, schema: str | None = None) -> str:
    return f"{schema}.{table}" if schema else table


def _type_text(type_: Any) -> str:
    if type_ is None:
        return "?"
    try:
        return str(sqltypes.to_instance(type_).compile(dialect=_PG))
    except Exception:  # a type PostgreSQL cannot render still deserves a readable message
        return repr(type_)


def _check_index_without_concurrently(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not seen.on_existing_table:
        return
    if isinstance(op, ops.CreateIndexOp) and not op.kw.get("postgresql_concurrently"):
        yield f"creates index {op.index_name} on {seen.table} without CONCURRENTLY{seen.where}"
    elif isinstance(op, ops.CreateUniqueConstraintOp | ops.CreatePrimaryKeyOp):
        kind = "unique" if isinstance(op, ops.CreateUniqueConstraintOp) else "primary key"
        yield f"adds {kind} constraint {op.constraint_name} to {seen.table}{seen.where}"
    elif isinstance(op, CreateExcludeConstraintOp):
        yield f"adds exclusion constraint {op.constraint_name} to {seen.table}"
    elif isinstance(op, ops.AddColumnOp) and (op.column.index or op.column.unique):
        yield f"adds column {seen.table}.{op.column.name} with an index built under lock"


def _check_not_null_without_default(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not isinstance(op, ops.AddColumnOp) or not seen.on_existing_table:
        return
    column = op.column
    if column.nullable is False and column.server_default is None and column.computed is None:
        yield (
            f"adds NOT NULL column {seen.table}.{column.name} without a server default{seen.where}"
        )


def _enum_change(existing: Any, new: Any) -> bool | None:
    """None when neither type is an Enum; else whether the allowed values change."""
    existing = sqltypes.to_instance(existing) if existing is not None else None
    new = sqltypes.to_instance(new)
    if not isinstance(new, sa.Enum) and not isinstance(existing, sa.Enum):
        return None
    if not (isinstance(new, sa.Enum) and isinstance(existing, sa.Enum)):
        return True
    before = (list(existing.enums), existing.native_enum, existing.name)
    return before != (list(new.enums), new.native_enum, new.name)


def _rewrites(existing: Any, new: Any) -> bool:
    """Whether PostgreSQL rewrites (or rescans) the table to change ``existing`` to ``new``.

    Only the changes PostgreSQL documents as binary-coercible pass: a longer or unbounded
    VARCHAR, VARCHAR to TEXT, more NUMERIC precision at the same scale, and no change at all.
    """
    if existing is None:
        return True  # unknown starting point: assume the worst
    existing, new = sqltypes.to_instance(existing), sqltypes.to_instance(new)
    if _type_text(existing) == _type_text(new):
        return False
    if isinstance(existing, sa.String) and not isinstance(existing, sa.Text | sa.Enum):
        if isinstance(new, sa.Text):
            return False
        if isinstance(new, sa.String) and not isinstance(new, sa.Enum):
            return not (new.length is None or (existing.length or 0) <= new.length)
    if isinstance(existing, sa.Numeric) and isinstance(new, sa.Numeric):
        if isinstance(existing, sa.Float) or isinstance(new, sa.Float):
            return True
        if new.precision is None and new.scale is None:
            return False  # unconstrained NUMERIC holds every value the old one did
        if existing.precision is None or new.precision is None:
            return True
        return (existing.scale or 0) != (new.scale or 0) or new.precision < existing.precision
    return True


def _check_type_change(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not isinstance(op, ops.AlterColumnOp) or op.modify_type is None:
        return
    if not seen.on_existing_table or _enum_change(op.existing_type, op.modify_type) is not None:
        return  # an enum's values are TR109's business
    if _rewrites(op.existing_type, op.modify_type):
        yield (
            f"changes the type of {seen.table}.{op.column_name} from "
            f"{_type_text(op.existing_type)} to {_type_text(op.modify_type)}{seen.where}"
        )


def _check_constraint_not_valid(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not seen.on_existing_table:
        return
    if isinstance(op, ops.CreateForeignKeyOp | ops.CreateCheckConstraintOp):
        if not op.kw.get("postgresql_not_valid"):
            kind = "foreign key" if isinstance(op, ops.CreateForeignKeyOp) else "CHECK constraint"
            yield f"adds {kind} {op.constraint_name} to {seen.table} without NOT VALID{seen.where}"
    elif isinstance(op, ValidateConstraintOp) and not seen.in_autocommit:
        if any(_adds_constraint(s, op.constraint_name) for s in _before(seen, revision)):
            yield (
                f"validates {op.constraint_name} in the revision that adds it: the lock taken "
                "by ADD CONSTRAINT is held through the whole scan"
            )
    elif isinstance(op, ops.AddColumnOp):
        column = f"{seen.table}.{op.column.name}"
        if op.column.foreign_keys:
            yield f"adds column {column} with a foreign key, validated at once{seen.where}"
        if any(isinstance(c, sa.CheckConstraint) for c in op.column.constraints):
            yield f"adds column {column} with a CHECK constraint, validated at once"


def _check_drop_column(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if isinstance(op, ops.DropColumnOp) and seen.on_existing_table:
        yield f"drops column {seen.table}.{op.column_name}{seen.where}"


def _check_drop_table(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    if isinstance(seen.operation, ops.DropTableOp) and seen.on_existing_table:
        yield f"drops table {seen.table}{seen.where}"


def _check_rename_column(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not isinstance(op, ops.AlterColumnOp) or not seen.on_existing_table:
        return
    if zero.is_shadow_column(op.column_name):
        return  # a type change's contract: the shadow takes the name of the column it replaces
    if op.modify_name and op.modify_name != op.column_name:
        yield f"renames column {seen.table}.{op.column_name} to {op.modify_name}{seen.where}"


def _check_rename_table(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if isinstance(op, ops.RenameTableOp) and seen.on_existing_table:
        if any(_creates_view(s.operation, op.table_name) for s in revision):
            return  # the old release goes on through a view under the old name
        yield f"renames table {seen.table} to {op.new_table_name}{seen.where}"


def _creates_view(operation: ops.MigrateOperation, name: str) -> bool:
    if not isinstance(operation, ops.ExecuteSQLOp):
        return False
    pattern = rf'^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+"?{re.escape(name)}"?\s'
    return re.match(pattern, str(operation.sqltext), re.I) is not None


def _check_enum_values(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if isinstance(op, AlterEnumValueOp):
        yield f"{op.action.lower()}s a value of enum type {op.type_name} (ALTER TYPE)"
    elif (
        isinstance(op, ops.AlterColumnOp)
        and op.modify_type is not None
        and seen.on_existing_table
        and _enum_change(op.existing_type, op.modify_type)
    ):
        yield (
            f"changes the values of enum column {seen.table}.{op.column_name} "
            f"({_type_text(op.existing_type)} to {_type_text(op.modify_type)})"
        )


def _check_set_not_null(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if not isinstance(op, ops.AlterColumnOp) or not seen.on_existing_table:
        return
    if op.modify_nullable is not False or op.existing_nullable is False:
        return
    if not any(_validates_earlier_check(s, seen, revision) for s in _before(seen, revision)):
        yield f"makes existing column {seen.table}.{op.column_name} NOT NULL{seen.where}"


def _validates_earlier_check(candidate: Seen, seen: Seen, revision: Sequence[Seen]) -> bool:
    """A constraint added by an earlier revision, validated here before SET NOT NULL: the
    documented way for PostgreSQL 12+ to skip the scan (the CHECK's text is trusted)."""
    op = candidate.operation
    return (
        isinstance(op, ValidateConstraintOp)
        and candidate.table == seen.table
        and not any(_adds_constraint(s, op.constraint_name) for s in revision)
    )


def _is_concurrent(op: ops.MigrateOperation) -> bool:
    return isinstance(op, ops.CreateIndexOp | ops.DropIndexOp) and bool(
        op.kw.get("postgresql_concurrently")
    )


def _check_non_transactional(seen: Seen, revision: Sequence[Seen]) -> Iterator[str]:
    op = seen.operation
    if _is_concurrent(op) and not seen.in_autocommit:
        verb = "CREATE" if isinstance(op, ops.CreateIndexOp) else "DROP"
        yield f"runs {verb} INDEX CONCURRENTLY in the revision's transaction: PostgreSQL refuses it"
    elif _is_concurrent(op) and isinstance(op, ops.CreateIndexOp) and not seen.via_helper:
        leftover = "IF NOT EXISTS then keeps" if op.if_not_exists else "makes the rerun fail"
        yield (
            f"builds index {op.index_name} concurrently by hand: an INVALID index left by a "
            f"failed earlier build {leftover}"
        )
    first_in_block = next((s for s in revision if s.in_autocommit), None)
    outside = sorted({s.line or 0 for s in revision if not s.in_autocommit})
    if seen is first_in_block and outside:
        lines = ", ".join(str(n) for n in outside if n) or "?"
        yield (
            f"mixes an autocommit block with transactional steps (line {lines}): a failure "
            "leaves the revision half applied and the rerun repeats what was committed"
        )


_ACK_EXAMPLE = "# tecnorev: allow TR1xx <why it is safe here>"

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "TR000",
            "acknowledgement not understood",
            "an acknowledgement records a reviewed decision; without a reason (or with an "
            "unknown rule id) it records nothing",
            f"write `{_ACK_EXAMPLE}` or `lint_allow = {{'TR1xx': '<reason>'}}`",
            acknowledgeable=False,
        ),
        Rule(
            "TR100",
            "upgrade() could not be analysed",
            "upgrade() failed when run offline (it reads the database, or raised), so the "
            "operations after that point were not checked",
            "keep reads out of schema revisions, or review the rest by hand and acknowledge",
        ),
        Rule(
            "TR101",
            "index built without CONCURRENTLY",
            "CREATE INDEX blocks every write to the table until the index is built",
            "create_index_concurrently(op, ...) from tecnorev.migrate.helpers, in a "
            "revision of its own; for a constraint, build the unique index that way, then "
            "ADD CONSTRAINT ... USING INDEX",
            _check_index_without_concurrently,
        ),
        Rule(
            "TR102",
            "NOT NULL column added without a server default",
            "fails on a table that has rows, or forces a rewrite and backfill under an "
            "exclusive lock",
            "add it nullable, backfill in batches, then set NOT NULL (see TR110), or give it a "
            "constant server_default (no rewrite since PostgreSQL 11)",
            _check_not_null_without_default,
        ),
        Rule(
            "TR103",
            "column type change",
            "rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock (reads and "
            "writes wait)",
            "add a column of the new type, backfill it in batches, switch readers, drop the old "
            "column in a later release; widening VARCHAR or NUMERIC precision is not flagged",
            _check_type_change,
        ),
        Rule(
            "TR104",
            "foreign key or CHECK constraint added without NOT VALID",
            "validating every existing row holds a lock that blocks writes (on both tables for "
            "a foreign key) for the whole scan",
            "postgresql_not_valid=True on create_foreign_key / create_check_constraint; then, "
            'in a later revision, op.execute("ALTER TABLE ... VALIDATE CONSTRAINT ...") (it '
            "scans without blocking writes)",
            _check_constraint_not_valid,
        ),
        Rule(
            "TR105",
            "column dropped",
            "its data is gone for good, and code still reading it fails until it is deployed",
            "stop reading and writing the column in one release; drop it in a contract "
            "revision (phase = 'contract'), which runs only once no replica runs a release "
            "that uses it",
            _check_drop_column,
        ),
        Rule(
            "TR106",
            "table dropped",
            "its rows are gone for good, and code still using it fails until it is deployed",
            "stop using the table in one release (back it up if in doubt); drop it in a "
            "contract revision (phase = 'contract'), which runs only once no replica runs a "
            "release that uses it",
            _check_drop_table,
        ),
        Rule(
            "TR107",
            "column renamed",
            "the running application still reads the old name and fails until it is deployed",
            "add the new column, write both, backfill, switch readers, then drop the old one",
            _check_rename_column,
        ),
        Rule(
            "TR108",
            "table renamed",
            "the running application still uses the old name and fails until it is deployed",
            "create the new table (or a view under the old name) and move readers first",
            _check_rename_table,
        ),
        Rule(
            "TR109",
            "enum values changed",
            "ALTER TYPE ... ADD VALUE cannot be undone (no DROP VALUE) and the value is unusable "
            "in the same transaction; changing a non-native enum rechecks every row under lock",
            "prefer sa.Enum(..., native_enum=False, create_constraint=True) and replace its CHECK "
            "constraint NOT VALID, then VALIDATE; for a native enum, only add values, in an "
            "autocommit_block, and acknowledge",
            _check_enum_values,
        ),
        Rule(
            "TR110",
            "existing column made NOT NULL",
            "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
            "add CHECK (col IS NOT NULL) NOT VALID in one revision; in the next, VALIDATE it, "
            "then SET NOT NULL (PostgreSQL 12+ skips the scan) and drop the CHECK",
            _check_set_not_null,
        ),
        Rule(
            "TR111",
            "non-transactional step not safely re-runnable",
            "CONCURRENTLY cannot run in a transaction; outside one, a failure leaves the earlier "
            "steps committed or an INVALID index behind, and the rerun must cope",
            "create_index_concurrently(op, ...) from tecnorev.migrate.helpers, alone in "
            "its revision",
            _check_non_transactional,
        ),
    )
}


# --------------------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    rule_id: str
    path: Path
    line: int | None
    revision: str | None
    message: str
    reason: str | None = None  # the acknowledgement's reason, when acknowledged

    @property
    def rule(self) -> Rule:
        return RULES[self.rule_id]

    @property
    def acknowledged(self) -> bool:
        return self.reason is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "title": self.rule.title,
            "file": str(self.path),
            "line": self.line,
            "revision": self.revision,
            "message": self.message,
            "why": self.rule.why,
            "instead": self.rule.instead,
            "acknowledged": self.acknowledged,
            "reason": self.reason,
        }


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that make ``db lint`` fail: those not acknowledged."""
    return [f for f in findings if not f.acknowledged]


def _display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def format_findings(findings: Sequence[Finding]) -> str:
    """Human-readable findings: ``file:line RULE message``, then why and what to do instead."""
    lines: list[str] = []
    for finding in findings:
        where = _display_path(finding.path) + (f":{finding.line}" if finding.line else "")
        head = f"{where} {finding.rule_id} {finding.message}"
        if finding.acknowledged:
            lines.append(f"{head} [acknowledged: {finding.reason}]")
            continue
        lines.append(head)
        lines.append(f"    why: {finding.rule.why}")
        lines.append(f"    instead: {finding.rule.instead}")
    return "\n".join(lines)


def findings_json(findings: Sequence[Finding], **extra: Any) -> str:
    """The findings as JSON for scripts, with ``ok`` false when one of them blocks."""
    return json.dumps(
        {
            **extra,
            "ok": not blocking(findings),
            "findings": [f.to_dict() for f in findings],
        },
        indent=2,
    )


# --------------------------------------------------------------------------- recording


@dataclass
class _Recorder:
    filename: str  # the revision file, as its code objects name it
    seen: list[Seen] = field(default_factory=list)
    autocommit_depth: int = 0
    new_tables: set[str] = field(default_factory=set)

    def record(self, operation: ops.MigrateOperation) -> None:
        line, via_helper = self._caller(sys._getframe(1))
        self._add(operation, line, via_helper, from_sql=False)
        for derived in _operations_in_sql(operation):
            self._add(derived, line, via_helper, from_sql=True)

    def _add(
        self, operation: ops.MigrateOperation, line: int | None, via_helper: bool, from_sql: bool
    ) -> None:
        self.seen.append(
            Seen(
                operation,
                line,
                self.autocommit_depth > 0,
                via_helper,
                frozenset(self.new_tables),
                from_sql,
            )
        )
        self._track_new_tables(operation)

    def _track_new_tables(self, operation: ops.MigrateOperation) -> None:
        op = operation
        if isinstance(op, ops.CreateTableOp):
            self.new_tables.add(_table_key(_qualified(op.table_name, op.schema)))
        if (
            isinstance(op, ops.RenameTableOp)
            and _table_key(_qualified(op.table_name, op.schema)) in self.new_tables
        ):
            self.new_tables.add(_table_key(_qualified(op.new_table_name, op.schema)))

    def _caller(self, frame: FrameType | None) -> tuple[int | None, bool]:
        """The line of the revision file that issued the operation (innermost), and whether
        it went through ``helpers`` on the way."""
        via_helper = False
        while frame is not None:
            filename = frame.f_code.co_filename
            if filename == self.filename:
                return frame.f_lineno, via_helper
            via_helper = via_helper or filename == helpers.__file__
            frame = frame.f_back
        return None, via_helper


def _record_invocations(operations: AbstractOperations, recorder: _Recorder) -> None:
    """Record every operation ``operations`` is asked to run, then run it.

    Hooked on the instance: alembic installs ``alembic.op`` only for its own classes, and
    builds the ``BatchOperations`` of ``batch_alter_table`` itself."""
    invoke = operations.invoke

    def recording_invoke(operation: ops.MigrateOperation) -> Any:
        recorder.record(operation)
        return invoke(operation)

    operations.invoke = recording_invoke  # type: ignore[method-assign]


def _recording_operations(context: MigrationContext, recorder: _Recorder) -> Operations:
    operations = Operations(context)
    _record_invocations(operations, recorder)
    plain_batch_alter_table = operations.batch_alter_table

    @contextmanager
    def batch_alter_table(*args: Any, **kw: Any) -> Iterator[BatchOperations]:
        with plain_batch_alter_table(*args, **kw) as batch_op:
            # Batch operations reach the database on leaving the block without passing
            # through invoke() again: record them as they are issued, at their own line.
            _record_invocations(batch_op, recorder)
            yield batch_op

    operations.batch_alter_table = batch_alter_table  # type: ignore[method-assign]
    return operations


class _LintContext(MigrationContext):
    recorder: _Recorder

    @contextmanager
    def autocommit_block(self) -> Iterator[None]:
        self.recorder.autocommit_depth += 1
        try:
            with super().autocommit_block():
                yield
        finally:
            self.recorder.autocommit_depth -= 1


def _lint_context(recorder: _Recorder) -> _LintContext:
    """An offline PostgreSQL migration context whose SQL goes nowhere; SQL a migration runs
    through ``op.get_bind().execute(...)`` is recorded like ``op.execute``."""
    options = {
        "as_sql": True,
        "literal_binds": True,
        "transactional_ddl": True,
        "output_buffer": io.StringIO(),
    }
    log = logging.getLogger("alembic.runtime.migration")
    level = log.level
    log.setLevel(logging.WARNING)  # "Generating static SQL" is not news for a lint run
    try:
        context = _LintContext(_PG, None, options)
    finally:
        log.setLevel(level)
    context.recorder = recorder

    def execute(construct: Any, *_multiparams: Any, **_params: Any) -> None:
        recorder.record(ops.ExecuteSQLOp(construct))

    # alembic types these as Connection, yet its own offline context keeps a MockConnection
    # there too (MigrationContext._stdout_connection)
    context.connection = context.impl.connection = sa.create_mock_engine(  # type: ignore[assignment]
        sa.make_url("postgresql+psycopg2://"), execute
    )
    return context


@contextmanager
def _proxies(operations: Operations, environment: EnvironmentContext) -> Iterator[None]:
    """Install ``alembic.op`` and ``alembic.context`` for the migration, restoring whatever
    was installed before (lint may run inside another alembic command)."""
    from alembic import context as context_module
    from alembic import op as op_module

    previous = [getattr(m, "_proxy", None) for m in (op_module, context_module)]
    operations._install_proxy()
    environment._install_proxy()
    try:
        yield
    finally:
        operations._remove_proxy()
        environment._remove_proxy()
        for proxy in previous:
            if proxy is not None:
                proxy._install_proxy()


def _record_upgrade(module: ModuleType) -> tuple[list[Seen], tuple[int | None, str] | None]:
    """Run ``module.upgrade()`` offline; the operations seen and, if it raised, where and why."""
    recorder = _Recorder(module.__file__ or "")
    context = _lint_context(recorder)
    operations = _recording_operations(context, recorder)
    # For migrations that ask ``alembic.context`` (is_offline_mode(), get_x_argument()).
    environment = EnvironmentContext(Config(), None, as_sql=True)  # type: ignore[arg-type]
    environment._migration_context = context
    failure = None
    with _proxies(operations, environment):
        try:
            module.upgrade()
        except Exception as exc:
            failure = (_failing_line(exc, recorder.filename), f"{type(exc).__name__}: {exc}")
    return recorder.seen, failure


def _failing_line(exc: BaseException, filename: str) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    return frames[-1].lineno if frames else None


# --------------------------------------------------------------------------- SQL text

_NAME = r'(?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?'
_CREATE_TABLE = re.compile(
    rf"^CREATE\s+(?:UNLOGGED\s+|TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<t>{_NAME})",
    re.I,
)
_CREATE_INDEX = re.compile(
    r"^CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?P<conc>CONCURRENTLY\s+)?(?P<ine>IF\s+NOT\s+EXISTS\s+)?"
    rf"(?:(?P<name>{_NAME})\s+)?ON\s+(?:ONLY\s+)?(?P<t>{_NAME})",
    re.I,
)
_DROP_INDEX = re.compile(r"^DROP\s+INDEX\s+CONCURRENTLY\b", re.I)
_DROP_TABLE = re.compile(
    r"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<tables>.+?)(?:\s+CASCADE)?$", re.I
)
_ALTER_TABLE = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<t>{_NAME})\s+(?P<actions>.+)$", re.I
)
_RENAME_TABLE = re.compile(rf"^RENAME\s+TO\s+(?P<new>{_NAME})$", re.I)
_ALTER_TYPE = re.compile(
    rf"^ALTER\s+TYPE\s+(?P<type>{_NAME})\s+(?P<action>ADD|RENAME)\s+VALUE\b", re.I
)


def _sql_text(operation: ops.MigrateOperation) -> str | None:
    if not isinstance(operation, ops.ExecuteSQLOp):
        return None
    sql = operation.sqltext
    if isinstance(sql, str):
        return sql
    if isinstance(sql, sa.TextClause):
        return sql.text
    if isinstance(sql, sa.schema.ExecutableDDLElement):
        try:
            return str(sql.compile(dialect=_PG))
        except sa.exc.SQLAlchemyError:  # not renderable offline: nothing to read
            return None
    return None  # DML constructs (inserts, updates): data, not schema


def _statements(sql: str) -> list[str]:
    """Statements with comments and string literals removed and whitespace collapsed."""
    sql = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    statements = (" ".join(s.split()) for s in sql.split(";") if s.strip())
    # statements inside a DO block, or one of its IF branches, are read as statements too
    return [_PLPGSQL_PREFIX.sub("", s) for s in statements]


_PLPGSQL_PREFIX = re.compile(
    r"^(?:DO\s+\$\w*\$\s*)?(?:BEGIN\s+)?(?:(?:ELS)?IF\s.+?\sTHEN\s+)?", re.I
)


def _split_actions(actions: str) -> list[str]:
    """ALTER TABLE's comma-separated actions (commas inside parentheses do not split)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(actions):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(actions[start:i].strip())
            start = i + 1
    parts.append(actions[start:].strip())
    return parts


def _bare(name: str) -> str:
    return name.split(".")[-1].strip('"')


def _schema(name: str) -> str | None:
    return name.split(".")[0].strip('"') if "." in name else None


def _add_column(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    rest = m.group("rest")
    not_null = re.search(r"\bNOT\s+NULL\b", rest, re.I) is not None
    default = sa.text("?") if re.search(r"\bDEFAULT\b", rest, re.I) else None
    column = sa.Column(
        _bare(m.group("col")), sa.types.NullType(), nullable=not not_null, server_default=default
    )
    if re.search(r"\bREFERENCES\b", rest, re.I):
        column.append_foreign_key(sa.ForeignKey("unknown.unknown"))
    return ops.AddColumnOp(_bare(table), column, schema=_schema(table))


def _add_constraint(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    name, kind = m.group("name"), m.group("kind").upper()
    not_valid = re.search(r"\bNOT\s+VALID\b", action, re.I) is not None
    t, s = _bare(table), _schema(table)
    if kind.startswith("FOREIGN"):
        return ops.CreateForeignKeyOp(
            name, t, "?", [], [], source_schema=s, postgresql_not_valid=not_valid
        )
    if kind == "CHECK":
        return ops.CreateCheckConstraintOp(name, t, "?", schema=s, postgresql_not_valid=not_valid)
    if re.search(r"\bUSING\s+INDEX\b", action, re.I):
        return ops.ExecuteSQLOp(action)  # attaches an index built beforehand: instant
    if kind == "UNIQUE":
        return ops.CreateUniqueConstraintOp(name, t, [], schema=s)
    if kind == "EXCLUDE":
        return CreateExcludeConstraintOp(name, t, [], schema=s)
    return ops.CreatePrimaryKeyOp(name, t, [], schema=s)


def _drop_column(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ops.DropColumnOp(_bare(table), _bare(m.group("col")), schema=_schema(table))


def _alter_type(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ops.AlterColumnOp(
        _bare(table), _bare(m.group("col")), schema=_schema(table), modify_type=sa.types.NullType()
    )


def _set_not_null(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ops.AlterColumnOp(
        _bare(table), _bare(m.group("col")), schema=_schema(table), modify_nullable=False
    )


def _rename_column(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ops.AlterColumnOp(
        _bare(table),
        _bare(m.group("col")),
        schema=_schema(table),
        modify_name=_bare(m.group("new")),
    )


def _validate_constraint(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ValidateConstraintOp(_bare(table), _bare(m.group("name")), schema=_schema(table))


def _rename_table(table: str, action: str, m: re.Match[str]) -> ops.MigrateOperation:
    return ops.RenameTableOp(_bare(table), _bare(m.group("new")), schema=_schema(table))


_ACTIONS: tuple[tuple[re.Pattern[str], Callable[..., ops.MigrateOperation]], ...] = (
    (_RENAME_TABLE, _rename_table),
    (
        re.compile(
            rf"^ADD\s+(?:CONSTRAINT\s+(?P<name>{_NAME})\s+)?"
            r"(?P<kind>FOREIGN\s+KEY|CHECK|UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b",
            re.I,
        ),
        _add_constraint,
    ),
    (
        re.compile(
            rf"^ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?P<col>{_NAME})(?P<rest>.*)$", re.I
        ),
        _add_column,
    ),
    (
        re.compile(
            rf"^DROP\s+(?!CONSTRAINT\b)(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?(?P<col>{_NAME})", re.I
        ),
        _drop_column,
    ),
    (
        re.compile(rf"^ALTER\s+(?:COLUMN\s+)?(?P<col>{_NAME})\s+(?:SET\s+DATA\s+)?TYPE\b", re.I),
        _alter_type,
    ),
    (
        re.compile(rf"^ALTER\s+(?:COLUMN\s+)?(?P<col>{_NAME})\s+SET\s+NOT\s+NULL\b", re.I),
        _set_not_null,
    ),
    (re.compile(rf"^VALIDATE\s+CONSTRAINT\s+(?P<name>{_NAME})", re.I), _validate_constraint),
    (
        re.compile(
            rf"^RENAME\s+(?!CONSTRAINT\b)(?:COLUMN\s+)?(?P<col>{_NAME})\s+TO\s+(?P<new>{_NAME})$",
            re.I,
        ),
        _rename_column,
    ),
)


def _operations_in_sql(operation: ops.MigrateOperation) -> list[ops.MigrateOperation]:
    """The schema changes SQL text makes, as the operations the rules understand."""
    sql = _sql_text(operation)
    if sql is None:
        return []
    found: list[ops.MigrateOperation] = []
    for statement in _statements(sql):
        found.extend(_operations_in_statement(statement))
    return found


def _operations_in_statement(statement: str) -> list[ops.MigrateOperation]:
    if m := _CREATE_TABLE.match(statement):
        return [ops.CreateTableOp(_bare(m["t"]), [], schema=_schema(m["t"]))]
    if m := _CREATE_INDEX.match(statement):
        return [
            ops.CreateIndexOp(
                _bare(m["name"] or "(unnamed)"),
                _bare(m["t"]),
                [],
                schema=_schema(m["t"]),
                unique=bool(m["unique"]),
                if_not_exists=bool(m["ine"]) or None,
                postgresql_concurrently=bool(m["conc"]),
            )
        ]
    if _DROP_INDEX.match(statement):
        return [ops.DropIndexOp("?", postgresql_concurrently=True)]
    if m := _DROP_TABLE.match(statement):
        names = [n.strip() for n in m["tables"].split(",")]
        return [ops.DropTableOp(_bare(n), schema=_schema(n)) for n in names]
    if m := _ALTER_TYPE.match(statement):
        return [AlterEnumValueOp(_bare(m["type"]), m["action"].upper())]
    if m := _ALTER_TABLE.match(statement):
        return [op for action in _split_actions(m["actions"]) if (op := _action(m["t"], action))]
    return []


def _action(table: str, action: str) -> ops.MigrateOperation | None:
    for pattern, build in _ACTIONS:
        if m := pattern.match(action):
            return build(table, action, m)
    return None


# --------------------------------------------------------------------------- acknowledgements

_ACK = re.compile(r"#\s*tecnorev\s*:\s*allow\b(?P<rest>.*)$", re.I)
_ACK_BODY = re.compile(r"^\s*(?P<ids>TR\d{3}(?:\s*,\s*TR\d{3})*)\b\s*[:\-]?\s*(?P<reason>.*)$")


@dataclass
class _Acknowledgements:
    """What the migration file acknowledges, by line and for the whole file."""

    by_line: dict[int, dict[str, str]]
    whole_file: dict[str, str]
    statements: list[tuple[int, int]]  # (first, last) line of every statement
    comment_lines: set[int]  # lines holding only a comment
    problems: list[tuple[int | None, str]]

    def reason(self, rule_id: str, line: int | None) -> str | None:
        if line is not None:
            for candidate in self._lines_for(line):
                if rule_id in self.by_line.get(candidate, {}):
                    return self.by_line[candidate][rule_id]
        return self.whole_file.get(rule_id)

    def _lines_for(self, line: int) -> Iterator[int]:
        """The lines of the innermost statement holding ``line``, and the comment lines
        directly above it."""
        spans = [s for s in self.statements if s[0] <= line <= s[1]]
        first, last = min(spans, key=lambda s: s[1] - s[0]) if spans else (line, line)
        yield from range(first, last + 1)
        above = first - 1
        while above in self.comment_lines:
            yield above
            above -= 1


def _read_acknowledgements(module: ModuleType, source: str) -> _Acknowledgements:
    acks = _Acknowledgements({}, {}, [], set(), [])
    tree = ast.parse(source)
    acks.statements = [
        (node.lineno, node.end_lineno or node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.stmt)
    ]
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        line = token.start[0]
        if not token.line[: token.start[1]].strip():
            acks.comment_lines.add(line)
        if m := _ACK.search(token.string):
            _read_comment(acks, line, m["rest"])
    _read_lint_allow(acks, module, tree)
    return acks


def _read_comment(acks: _Acknowledgements, line: int, text: str) -> None:
    body = _ACK_BODY.match(text)
    if body is None:
        acks.problems.append((line, f"acknowledgement not understood: write `{_ACK_EXAMPLE}`"))
        return
    ids = [i.strip() for i in body["ids"].split(",")]
    reason = body["reason"].strip()
    for rule_id in ids:
        problem = _acknowledgement_problem(rule_id, reason, f"# tecnorev: allow {rule_id} <why>")
        if problem:
            acks.problems.append((line, problem))
        else:
            acks.by_line.setdefault(line, {})[rule_id] = reason


def _acknowledgement_problem(rule_id: str, reason: Any, example: str) -> str | None:
    rule = RULES.get(rule_id)
    if rule is None:
        return (
            f"acknowledges {rule_id}, which is not a rule (see `{project().command} lint --rules`)"
        )
    if not rule.acknowledgeable:
        return f"{rule_id} cannot be acknowledged"
    if not isinstance(reason, str) or not reason.strip():
        return f"acknowledges {rule_id} without a reason: write `{example}`"
    return None


def _assigns_lint_allow(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return any(isinstance(t, ast.Name) and t.id == "lint_allow" for t in targets)


def _read_lint_allow(acks: _Acknowledgements, module: ModuleType, tree: ast.Module) -> None:
    allowed = getattr(module, "lint_allow", None)
    if allowed is None:
        return
    line = next((n.lineno for n in tree.body if _assigns_lint_allow(n)), None)
    if not isinstance(allowed, dict):
        acks.problems.append((line, "lint_allow must be a dict of rule id to reason"))
        return
    for rule_id, reason in allowed.items():
        example = f'lint_allow = {{"{rule_id}": "<why>"}}'
        problem = _acknowledgement_problem(str(rule_id), reason, example)
        if problem:
            acks.problems.append((line, problem))
        else:
            acks.whole_file[rule_id] = reason.strip()


# --------------------------------------------------------------------------- linting


def lint_module(module: ModuleType, path: Path | None = None) -> list[Finding]:
    """Lint a loaded revision module (what ``lint_revision`` and ``lint_paths`` share)."""
    path = Path(path or module.__file__ or "?")
    revision = getattr(module, "revision", None)
    seen, failure = _record_upgrade(module)
    raw: list[tuple[str, int | None, str]] = []
    contract = getattr(module, "phase", "expand") == "contract"
    for item in seen:
        for rule in RULES.values():
            if contract and rule.id in CONTRACT_PHASE_ALLOWS:
                continue  # what a contract revision is for: it runs after the old release
            if rule.check is not None:
                raw.extend((rule.id, item.line, message) for message in rule.check(item, seen))
    if failure is not None:
        line, error = failure
        raw.append(("TR100", line, f"upgrade() stopped offline: {error}"))
    acks = _read_acknowledgements(module, path.read_text(encoding="utf-8"))
    findings = [
        Finding(rule_id, path, line, revision, message, acks.reason(rule_id, line))
        for rule_id, line, message in _unique(raw)
    ]
    findings += [Finding("TR000", path, line, revision, text) for line, text in acks.problems]
    return sorted(findings, key=lambda f: (f.line or 0, f.rule_id))


def _unique(raw: list[tuple[str, int | None, str]]) -> list[tuple[str, int | None, str]]:
    # A loop in upgrade() may issue the same operation from one line more than once.
    return list(dict.fromkeys(raw))


def lint_revision(script: Script) -> list[Finding]:
    """Lint one revision of a ``ScriptDirectory``."""
    return lint_module(script.module, Path(script.path))


def lint_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Finding]:
    """Lint revision files by path (e.g. the file ``db generate`` just wrote)."""
    findings: list[Finding] = []
    for raw_path in paths:
        path = Path(raw_path).resolve()
        module = load_python_file(path.parent, path.name)
        findings.extend(lint_module(module, path))
    return findings
