"""``tecnorev db contract [module ...]``: the second phase of a zero-downtime change.

Applies the contract revisions ``upgrade heads`` held back (with the expand revisions still
pending before them), for every module or the ones named.  Refused, with each reason, while a
live replica runs a release older than a contract revision of its module, or while a backfill
before it is unfinished; ``--wait SECONDS`` asks again every few seconds until then (a
replica stopped during a rollout withdraws its report at once, a killed one's expires after
three report intervals).  On SQLite ``upgrade`` already ran them.
"""

from __future__ import annotations

import sys
import time
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
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="while refused, ask again every few seconds for this long (default: refuse at once)",
    )


RETRY_EVERY = 2.0  # seconds between two checks while waiting


def run(config: Config, options: Namespace) -> int:
    from alembic import command
    from alembic.util import CommandError

    from tecnorev.migrate.environment import CONTRACT_ATTRIBUTE
    from tecnorev.migrate.errors import MigrationError
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.phases import ContractRefused

    registry = get_registry()
    unknown = [m for m in options.modules if m not in registry]
    if unknown:
        raise MigrationError(
            f"not an installed module: {', '.join(unknown)} "
            f"(installed: {', '.join(registry.names)})"
        )
    config.attributes[CONTRACT_ATTRIBUTE] = True
    deadline = time.monotonic() + max(options.wait, 0.0)
    for target in [f"{m}@head" for m in options.modules] or ["heads"]:
        said = False
        while True:
            try:
                command.upgrade(config, target, sql=options.sql)
                break
            except CommandError as refused:  # the environment's form of every MigrationError
                if not isinstance(refused.__cause__, ContractRefused):
                    raise
                if time.monotonic() + RETRY_EVERY > deadline:
                    raise
                if not said:
                    print(f"{refused}\nwaiting up to {options.wait:g}s...", file=sys.stderr)
                    said = True
                time.sleep(RETRY_EVERY)
    return 0
