"""``tecnorev db restore <file>``: put back a backup made by ``tecnorev db upgrade --backup``."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

from alembic.config import Config

from tecnorev.migrate.project import project

NAME = "restore"
HELP = (
    "replace the database with a backup made by 'upgrade --backup' (pg_dump -Fc file or "
    "SQLite backup); refuses a database that is not empty unless --force"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("file", help="the backup file")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace a database that is not empty (everything in it is dropped first)",
    )


def run(config: Config, options: Namespace) -> int:
    from pathlib import Path

    from tecnorev.migrate.backup import existing_objects, restore_database
    from tecnorev.migrate.commands._connect import migration_connection
    from tecnorev.migrate.connect import describe_url
    from tecnorev.migrate.state import recorded_versions

    file = Path(options.file)
    # Under the migration lock: no migrator may run while the database is being replaced.
    with migration_connection(config, lock=True) as connection:
        restore_database(connection, file, force=options.force)
        objects = existing_objects(connection)
        versions = recorded_versions(connection)
        connection.rollback()
        where = describe_url(connection.engine.url)
    print(f"restored {file} into {where} ({len(objects)} tables, views, sequences and types)")
    print(f"recorded revisions: {', '.join(sorted(versions)) or 'none'}")
    print(f"'{project().command} current' shows where each module stands now")
    return 0
