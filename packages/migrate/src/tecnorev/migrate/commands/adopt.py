"""``tecnorev db adopt``: bring a database built before this tool under per-module migrations.

Such a database was made by ``create_all`` or by one linear Alembic history (the guide's).
Each installed module's tables are compared with its models; only when every module either
matches exactly or is wholly absent is anything recorded: matching modules are stamped at
their head, absent ones are left for ``upgrade heads``, and the old single-history record is
moved into the ledger (kept, never silently deleted).
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

from alembic.config import Config

from tecnorev.migrate.project import project

if TYPE_CHECKING:
    import sqlalchemy as sa

    from tecnorev.migrate.modules import Registry

NAME = "adopt"
HELP = (
    "adopt a database built without per-module migrations (create_all or one linear "
    "history): verify each module's tables match its models, then record each at its head"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be adopted, record nothing"
    )


def compare_module(connection: sa.Connection, registry: Registry, module: str) -> list[str]:
    """Differences between the database and ``module``'s models (empty: they match)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tecnorev.migrate import autogen

    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": autogen.make_include_object(registry.table_owners, module),
        },
    )
    # alembic compares with a sequence of MetaData too (its AutogenContext takes one); only
    # compare_metadata's annotation says a single MetaData
    diffs = compare_metadata(context, registry.load_models())  # type: ignore[arg-type]
    return [autogen.describe_diff(d) for d in diffs]


def run(config: Config, options: Namespace) -> int:
    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from tecnorev.migrate import ledger, state
    from tecnorev.migrate.commands._connect import migration_connection
    from tecnorev.migrate.modules import get_registry

    registry = get_registry()
    scripts = ScriptDirectory.from_config(config)
    with migration_connection(config, lock=True) as connection:
        recorded = state.recorded_versions(connection)
        known = [r for r in recorded if r not in state.unknown_versions(connection, scripts)]
        if known:
            print(
                f"this database is already migrated per module ({', '.join(known)} recorded): "
                f"nothing to adopt. Run: {project().command} upgrade heads"
            )
            return 1
        present = set(sa.inspect(connection).get_table_names())
        matching, absent, problems = [], [], {}
        for module in registry.names:
            tables = registry.tables_of(module)
            if not tables & present:
                absent.append(module)
                continue
            differences = compare_module(connection, registry, module)
            if differences:
                problems[module] = differences
            else:
                matching.append(module)
        connection.rollback()
        if problems:
            print("cannot adopt: these modules' tables differ from their models:")
            for module, differences in problems.items():
                for line in differences:
                    print(f"  {module}: {line}")
            print("Fix the schema (or the models) so they match, then run adopt again.")
            return 1
        if not matching:
            print(f"no module's tables are present: run {project().command} upgrade heads instead")
            return 1
        heads = {scripts.get_revision(f"{m}@head").revision for m in matching}
        print(f"matching their head: {', '.join(matching)}")
        if absent:
            print(
                f"not present ({project().command} upgrade heads creates them): {', '.join(absent)}"
            )
        if options.dry_run:
            return 0
        with connection.begin():
            ledger.ensure_tables(connection)
            for old in recorded:
                ledger.record(connection, revision=old, module=None, direction="adopted-from")
            state.stamp_versions(connection, scripts, remove=recorded, add=heads)
            for module in matching:
                for script in scripts.iterate_revisions(f"{module}@head", f"{module}@base"):
                    ledger.record(
                        connection,
                        revision=script.revision,
                        module=module,
                        direction="adopt",
                        distribution=registry[module].distribution,
                        parents=ledger.parents_of(script),
                        path=script.path,
                    )
    if recorded:
        print(f"the earlier single history ({', '.join(recorded)}) is kept in the ledger")
    print(f"adopted. From now on: {project().command} upgrade heads")
    return 0
