"""``tecnorev db replicas``: the service processes reporting which release they run.

What ``tecnorev db contract`` waits on: each live report names the replica (host, pid), when it
was last seen, when its report expires, and each module's version and code heads.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "replicas"
HELP = "list the service replicas reporting which release of each module they run"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--forget",
        metavar="REPLICA",
        help="drop the report of a replica known to be gone, before it expires",
    )


def run(config: Config, options: Namespace) -> int:
    from tecnorev.migrate import replicas
    from tecnorev.migrate.commands._connect import migration_connection

    with migration_connection(config) as connection:
        if options.forget:
            with connection.begin():
                if not replicas.forget(connection, options.forget):
                    print(f"no report from replica {options.forget!r}")
                    return 1
            print(f"forgot replica {options.forget}")
            return 0
        found = replicas.live(connection)
        connection.rollback()
    if options.json:
        print(json.dumps([r.to_json() for r in found], indent=2))
        return 0
    if not found:
        print("no replica reports (services report on PostgreSQL only, every few seconds)")
        return 0
    for replica in found:
        seen = replica.seen_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        until = replica.expires_at.strftime("%H:%M:%S UTC")
        print(
            f"{replica.replica}  pid {replica.pid} on {replica.host}, seen {seen} (until {until})"
        )
        for module, running in sorted(replica.modules.items()):
            heads = ", ".join(running.get("heads") or ()) or "-"
            print(f"    {module:<12} {running.get('version') or '?':<10} {heads}")
    return 0
