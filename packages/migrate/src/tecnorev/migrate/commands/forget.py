"""``tecnorev db forget <module>``: set aside the record of a module that was uninstalled."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "forget"
HELP = (
    "set aside the recorded revisions of a module that is no longer installed (kept, and "
    "restored when it is installed again) so the installed modules keep migrating"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", help="name of the uninstalled module")


def run(config: Config, options: Namespace) -> int:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.commands._connect import migration_connection
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.state import forget_module

    scripts = ScriptDirectory.from_config(config)
    with migration_connection(config, lock=True) as connection, connection.begin():
        kept, restamped = forget_module(connection, scripts, get_registry(), options.module)
    print(
        f"set aside {', '.join(kept)} of module {options.module!r} "
        "(kept in tecnorev_forgotten_revision)"
    )
    if restamped:
        print(f"recorded as applied again: {', '.join(restamped)}")
    return 0
