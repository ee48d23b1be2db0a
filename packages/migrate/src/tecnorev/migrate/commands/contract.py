"""``tecnorev db contract [module ...]``: the second phase of a zero-downtime change.

Applies the contract revisions ``upgrade heads`` held back (with the expand revisions still
pending before them), for every module or the ones named.  Refused, with each reason, while a
live replica runs a release older than a contract revision of its module, or while a backfill
before it is unfinished.  On SQLite ``upgrade`` already ran them.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "contract"
HELP = (
    "apply the contract revisions held back by upgrade (drops of old columns, NOT NULL, ...), "
    "once every replica runs the new release and the backfills are done"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("modules", nargs="*", metavar="module", help="default: every module")
    parser.add_argument(
        "--sql", action="store_true", help="print the SQL instead of running it (not gated)"
    )


def run(config: Config, options: Namespace) -> int:
    from alembic import command

    from tecnorev.migrate.environment import CONTRACT_ATTRIBUTE
    from tecnorev.migrate.errors import MigrationError
    from tecnorev.migrate.modules import get_registry

    registry = get_registry()
    unknown = [m for m in options.modules if m not in registry]
    if unknown:
        raise MigrationError(
            f"not an installed module: {', '.join(unknown)} "
            f"(installed: {', '.join(registry.names)})"
        )
    config.attributes[CONTRACT_ATTRIBUTE] = True
    for target in [f"{m}@head" for m in options.modules] or ["heads"]:
        command.upgrade(config, target, sql=options.sql)
    return 0
