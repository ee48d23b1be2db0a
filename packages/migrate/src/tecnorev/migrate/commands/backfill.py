"""``tecnorev db backfill status|run``: the batched data changes revisions declare.

``status`` lists each backfill with its state and progress (and the last error, if a batch
failed), exiting 1 while one is unfinished; ``run`` runs the unfinished ones (or those
named), resuming after the last batch that committed, with a progress line and an estimate of
the time left.
"""

from __future__ import annotations

import json
import sys
from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "backfill"
HELP = "show (status) or run (run [name ...]) the batched backfills revisions declare"


def add_arguments(parser: ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="backfill_action", required=True, metavar="status|run")
    status = actions.add_parser("status", help="each backfill's state and progress")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    run_ = actions.add_parser("run", help="run the unfinished backfills, resuming each")
    run_.add_argument("names", nargs="*", metavar="name", help="default: every unfinished one")
    run_.add_argument("--batch-size", type=int, metavar="ROWS", help="rows per batch")
    run_.add_argument("--pause", type=float, metavar="SECONDS", help="pause between batches")


def run(config: Config, options: Namespace) -> int:
    from tecnorev.migrate import backfill, safety
    from tecnorev.migrate.commands._connect import migration_connection
    from tecnorev.migrate.errors import MigrationError

    if options.backfill_action == "status":
        with migration_connection(config) as connection:
            jobs = backfill.read(connection)
            connection.rollback()
        unfinished = 0 if all(j.done for j in jobs) else 1
        if options.json:
            print(json.dumps([j.to_json() for j in jobs], indent=2))
            return unfinished
        if not jobs:
            print("no backfill declared")
            return 0
        for job in jobs:
            where = f" where {job.condition}" if job.condition else ""
            print(f"{job.label:<40} {job.state:<8} {job.progress()}")
            print(f"    {job.table_name}: set {job.assign}{where}, by {job.key_column}")
            if job.error:
                print(f"    last error: {job.error}")
        return unfinished
    if options.batch_size is not None and options.batch_size < 1:
        raise MigrationError("--batch-size: 1 row or more")
    if options.pause is not None and options.pause < 0:
        raise MigrationError("--pause: 0 seconds or more")
    with migration_connection(config) as connection:
        policy = safety.LockTimeout.from_env() if connection.dialect.name != "sqlite" else None
        pace = backfill.pace(policy, options.batch_size, options.pause)
        finished = backfill.run_pending(connection, pace, options.names, out=sys.stderr)
    if not finished:
        print("nothing to backfill")
    return 0
