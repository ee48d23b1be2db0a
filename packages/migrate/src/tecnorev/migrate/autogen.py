"""Autogenerate, scoped to one module: what to compare, how to render it, what to add.

* only tables owned by installed modules are compared, and with ``--head <pkg>@head`` only
  that module's: nothing of another module is created, nothing unknown is dropped;
* SQLModel and project types render as plain SQLAlchemy, so revisions never import sqlmodel;
* revision ids name their module, new branches land in the module's own folder;
* a foreign key into another module adds that module's head to ``depends_on`` (and is refused
  when the module is not a declared dependency);
* foreign keys marked ``use_alter`` (cycles) become separate ``create_foreign_key`` steps, since
  ``create_table`` would otherwise reference a table that does not exist yet;
* dropping a table drops the named PostgreSQL enum types only it used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.operations import MigrateOperation, ops
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from tecnorev.migrate.autogen_phases import Phases, split_phases
from tecnorev.migrate.modules import Registry
from tecnorev.migrate.revisions import module_of_revision, new_revision_id


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    if type_ != "type":
        return False
    # A project's own column types (SQLModel's AutoString, a UTC timestamp decorator) are
    # written as the SQLAlchemy type they store as: a revision must not import project code,
    # which may change or go after the revision shipped.
    if isinstance(obj, sa.types.TypeDecorator):
        impl = obj.impl_instance
        if type(impl).__module__.startswith("sqlalchemy.sql"):
            return f"sa.{impl!r}"
    return False


def scope_from_head(
    head: str | None, branch_label: str | None, registry: Registry, scripts: ScriptDirectory
) -> str | None:
    """The module a new revision belongs to, from ``--head`` / ``--branch-label``."""
    if head in (None, "base") or head.startswith("base"):
        return branch_label if branch_label in registry else None
    if "@" in head:
        label = head.split("@", 1)[0]
        if label in registry:
            return label
        return module_of_revision(label, scripts, registry)
    if head in ("head", "heads"):
        return None
    return module_of_revision(head, scripts, registry)


def make_include_object(
    owners: dict[str, str],
    scope: str | None,
    metadata: sa.MetaData | Sequence[sa.MetaData] | None = None,
) -> Callable[..., bool]:
    """Which objects autogenerate compares: the installed modules' tables (those of ``scope``
    alone, if given), less the indexes the models leave to their migrations: those a table
    lists in ``info["migration_indexes"]``, which no model describes so that every backend
    reflects it back the same (a trigram index on an expression, say)."""
    collections = (
        [] if metadata is None else [metadata] if isinstance(metadata, sa.MetaData) else metadata
    )
    left_to_migrations = frozenset(
        name
        for collection in collections
        for table in collection.tables.values()
        for name in table.info.get("migration_indexes", ())
    )

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "table":
            table_name = name
        else:
            table = getattr(obj, "table", None)
            table_name = getattr(table, "name", None)
        owner = owners.get(table_name or "")
        if owner is None:
            return False  # alembic's and our bookkeeping, or a module that is not installed
        if type_ == "index" and name in left_to_migrations:
            return False
        return scope is None or owner == scope

    return include_object


class DropEnumTypeOp(MigrateOperation):
    """Drop a named enum type after the table that used it (a no-op where enums are not types)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def reverse(self) -> MigrateOperation:
        raise NotImplementedError


@renderers.dispatch_for(DropEnumTypeOp)
def _render_drop_enum(autogen_context: Any, op: DropEnumTypeOp) -> str:
    return f"sa.Enum(name={op.type_name!r}).drop(op.get_bind(), checkfirst=False)"


class CreateEnumTypeOp(MigrateOperation):
    """Create a named enum type before a column that uses it is added to an existing table
    (``add_column`` does not create it, unlike ``create_table``)."""

    def __init__(self, type_name: str, values: list[str]) -> None:
        self.type_name = type_name
        self.values = values

    def reverse(self) -> MigrateOperation:
        return DropEnumTypeOp(self.type_name)


@renderers.dispatch_for(CreateEnumTypeOp)
def _render_create_enum(autogen_context: Any, op: CreateEnumTypeOp) -> str:
    values = ", ".join(repr(v) for v in op.values)
    return f"sa.Enum({values}, name={op.type_name!r}).create(op.get_bind(), checkfirst=False)"


def _walk(op_list: Iterable[MigrateOperation]) -> Iterator[MigrateOperation]:
    for op in op_list:
        yield op
        if isinstance(op, ops.OpContainer):
            yield from _walk(op.ops)


def _foreign_keys_added(upgrade_ops: ops.UpgradeOps) -> Iterator[tuple[str, str]]:
    """(table, referred table) for every foreign key an upgrade creates."""
    for op in _walk(upgrade_ops.ops):
        if isinstance(op, ops.CreateTableOp):
            for item in op.columns:
                if isinstance(item, sa.ForeignKeyConstraint):
                    yield op.table_name, item.referred_table.name
                elif isinstance(item, sa.Column):
                    for fk in item.foreign_keys:
                        yield op.table_name, fk.column.table.name
        elif isinstance(op, ops.CreateForeignKeyOp):
            yield op.source_table, op.referent_table
        elif isinstance(op, ops.AddColumnOp):
            for fk in op.column.foreign_keys:
                yield op.table_name, fk.column.table.name


def _split_use_alter(script: ops.MigrationScript) -> None:
    upgrade, downgrade = script.upgrade_ops, script.downgrade_ops
    assert upgrade is not None and downgrade is not None
    deferred: list[tuple[str, sa.ForeignKeyConstraint]] = []
    for op in upgrade.ops:
        if not isinstance(op, ops.CreateTableOp):
            continue
        keep = []
        for item in op.columns:
            if isinstance(item, sa.ForeignKeyConstraint) and item.use_alter:
                deferred.append((op.table_name, item))
            else:
                keep.append(item)
        op.columns = keep
    if not deferred:
        return
    for table_name, fk in deferred:
        upgrade.ops.append(
            ops.ModifyTableOps(table_name, [ops.CreateForeignKeyOp.from_constraint(fk)])
        )
    drops = [
        ops.ModifyTableOps(table_name, [ops.DropConstraintOp.from_constraint(fk)])
        for table_name, fk in deferred
    ]
    downgrade.ops[:0] = drops


def _named_enums(table_op: ops.CreateTableOp) -> set[str]:
    return {
        item.type.name
        for item in table_op.columns
        if isinstance(item, sa.Column)
        and isinstance(item.type, sa.Enum)
        and item.type.native_enum
        and item.type.name
    }


def _enum_users(metadata: Iterable[sa.MetaData]) -> dict[str, set[str]]:
    """Native enum type name -> the tables whose columns use it."""
    users: dict[str, set[str]] = {}
    for table in (t for each in metadata for t in each.tables.values()):
        for column in table.columns:
            if isinstance(column.type, sa.Enum) and column.type.native_enum and column.type.name:
                users.setdefault(column.type.name, set()).add(table.name)
    return users


def _column_enum(column: sa.Column | None) -> tuple[str, sa.Enum] | None:
    """The name and type of ``column``'s named native enum, if it has one."""
    if (
        column is not None
        and isinstance(column.type, sa.Enum)
        and column.type.native_enum
        and column.type.name
    ):
        return column.type.name, column.type
    return None


def _added_column_enums(
    op: MigrateOperation, table_ops: type[ops.AddColumnOp] | type[ops.DropColumnOp]
) -> list[tuple[str, str, sa.Enum]]:
    """(table, enum name, enum) for each column with a native enum that ``op`` adds or
    drops."""
    inner = op.ops if isinstance(op, ops.ModifyTableOps) else [op]
    found: list[tuple[str, str, sa.Enum]] = []
    for item in inner:
        if isinstance(item, table_ops):
            column = item.column if isinstance(item, ops.AddColumnOp) else item.to_column()
            enum = _column_enum(column)
            if enum is not None:
                found.append((item.table_name, *enum))
    return found


def _enum_types_for_added_columns(
    script: ops.MigrationScript, metadata: Iterable[sa.MetaData]
) -> None:
    """Create the type before ``add_column`` and drop it after the ``drop_column`` that undoes
    it, when no other table uses it (a type used elsewhere already exists)."""
    assert script.upgrade_ops is not None and script.downgrade_ops is not None
    users = _enum_users(metadata)
    upgrade: list[MigrateOperation] = []
    for op in script.upgrade_ops.ops:
        for table, name, enum in _added_column_enums(op, ops.AddColumnOp):
            if users.get(name, set()) <= {table}:
                upgrade.append(CreateEnumTypeOp(name, list(enum.enums)))
        upgrade.append(op)
    script.upgrade_ops.ops = upgrade
    downgrade: list[MigrateOperation] = []
    for op in script.downgrade_ops.ops:
        downgrade.append(op)
        for table, name, _enum in _added_column_enums(op, ops.DropColumnOp):
            if users.get(name, set()) <= {table}:
                downgrade.append(DropEnumTypeOp(name))
    script.downgrade_ops.ops = downgrade


def _drop_enum_types(script: ops.MigrationScript, metadata: Iterable[sa.MetaData]) -> None:
    assert script.downgrade_ops is not None
    used_elsewhere = _enum_users(metadata)
    new_ops: list[MigrateOperation] = []
    for op in script.downgrade_ops.ops:
        new_ops.append(op)
        if isinstance(op, ops.DropTableOp) and op._reverse is not None:
            for name in sorted(_named_enums(op._reverse)):
                if used_elsewhere.get(name, set()) <= {op.table_name}:
                    new_ops.append(DropEnumTypeOp(name))
    script.downgrade_ops.ops = new_ops


def _add_depends_on(
    script: ops.MigrationScript,
    module: str,
    owners: dict[str, str],
    registry: Registry,
    scripts: ScriptDirectory,
) -> None:
    assert script.upgrade_ops is not None
    allowed = registry.dependencies(module)
    needed: set[str] = set()
    for table, referred in _foreign_keys_added(script.upgrade_ops):
        owner = owners.get(referred)
        if owner is None or owner == module:
            continue
        if owner not in allowed:
            raise CommandError(
                f"table {table!r} of module {module!r} gets a foreign key to {referred!r}, "
                f"which belongs to module {owner!r}; {module!r} does not declare {owner!r} as "
                f"a dependency. Add it to depends_on in the module descriptor and to the "
                "distribution's dependencies, or drop the foreign key."
            )
        needed.add(owner)
    if not needed:
        return
    already = _ancestors(scripts, script.head)
    depends = list(script.depends_on or ())
    for owner in sorted(needed):
        for head in scripts.get_revisions(f"{owner}@head"):
            if head is not None and head.revision not in already | set(depends):
                depends.append(head.revision)
    # Keep only what is not already implied by another dependency.
    implied: set[str] = set()
    for dep in depends:
        implied |= _ancestors(scripts, dep) - {dep}
    depends = [dep for dep in depends if dep not in implied]
    script.depends_on = depends or None


def _ancestors(scripts: ScriptDirectory, head: str | None) -> set[str]:
    if head in (None, "base") or head.startswith("base"):
        return set()
    found: set[str] = set()
    for rev in scripts.iterate_revisions(head, "base"):
        found.add(rev.revision)
    return found


def make_process_revision_directives(
    registry: Registry,
    scripts: ScriptDirectory,
    metadata: Sequence[sa.MetaData] | None,
    owners: dict[str, str] | None,
    keep_rev_id: bool,
    creating: bool = True,
    skip_empty: bool = False,
    phases: Phases | None = None,
) -> Callable[..., None]:
    """``phases``: when given, breaking changes are written as an expand revision and a
    contract revision after it (see :mod:`tecnorev.migrate.autogen_phases`), and what was
    read as what is recorded in it."""

    def process_revision_directives(context: Any, revision: Any, directives: list[Any]) -> None:
        script: ops.MigrationScript = directives[0]
        # ``--branch-label`` gives one label (a list or tuple never names a module)
        label = script.branch_label if isinstance(script.branch_label, str) else None
        module = scope_from_head(script.head, label, registry, scripts)
        if module is None:
            if not creating:
                return  # ``check`` compares every module at once and writes nothing
            heads = ", ".join(f"{m}@head" for m in registry.names)
            raise CommandError(
                "a new revision belongs to one module: name it with --head <module>@head "
                f"(installed: {heads}), or start a module's branch with --head base "
                "--branch-label <module>"
            )
        if not keep_rev_id:
            script.rev_id = new_revision_id(module)
        if script.head in (None, "base") and script.version_path is None:
            path = registry[module].migrations_path()
            path.mkdir(parents=True, exist_ok=True)
            script.version_path = str(path)
        if metadata is not None and owners is not None and script.upgrade_ops is not None:
            _split_use_alter(script)
            _drop_enum_types(script, metadata)
            _enum_types_for_added_columns(script, metadata)
            _add_depends_on(script, module, owners, registry, scripts)
            if skip_empty and script.upgrade_ops.is_empty():
                directives[:] = []  # nothing changed: write no file
                return
            if phases is not None:
                contract, phases.said = split_phases(script, list(metadata), renames=phases.renames)
                if contract is not None:
                    contract.rev_id = new_revision_id(module)
                    contract.head = script.rev_id
                    phases.contract.append(contract.rev_id)
                    directives.append(contract)

    return process_revision_directives


def describe_diff(diff: Any) -> str:
    """One line a person can read for one autogenerate difference."""
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(describe_diff(d) for d in diff)
    kind = diff[0]
    if kind in ("add_table", "remove_table"):
        return f"{kind.replace('_', ' ')} {diff[1].name!r}"
    if kind in ("add_column", "remove_column"):
        return f"{kind.replace('_', ' ')} {diff[2]}.{diff[3].name}"
    if kind in (
        "add_index",
        "remove_index",
        "add_constraint",
        "remove_constraint",
        "add_fk",
        "remove_fk",
    ):
        obj = diff[1]
        table = getattr(getattr(obj, "table", None), "name", "?")
        return f"{kind.replace('_', ' ')} {obj.name or '(unnamed)'!r} on {table!r}"
    if kind.startswith("modify_"):
        _, _schema, table, column, _info, old, new = diff
        return f"{kind.replace('_', ' ')} {table}.{column}: {old!r} -> {new!r}"
    return str(diff)


__all__ = [
    "CreateEnumTypeOp",
    "DropEnumTypeOp",
    "describe_diff",
    "make_include_object",
    "make_process_revision_directives",
    "render_item",
    "scope_from_head",
]
