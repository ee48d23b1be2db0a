"""``tecnorev db repair <revision> --reason "..."``: accept a reviewed edit of an applied file.

The ledger keeps the checksum of each revision file as it was applied, and ``status`` exits 4
once the file changes: the database ran the old text.  When the edit is intended and changes
nothing the database needs (a comment, a docstring, an import moved), repair records the file
as it is now, with the reason and who gave it, so ``db log`` tells the story.  Line endings and
trailing whitespace never need it: checksums ignore them.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace

from alembic.config import Config

NAME = "repair"
HELP = (
    "record a reviewed, intentional edit of an applied revision file in the ledger, with the "
    "reason (shown by 'db log'), so status no longer reports it"
)
MIN_REASON = 10


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("revision", help="the applied revision whose file was edited")
    parser.add_argument("--reason", required=True, help="why the edit is safe (kept in the ledger)")


def run(config: Config, options: Namespace) -> int:
    import sys

    import sqlalchemy as sa
    from alembic.script import ScriptDirectory

    from tecnorev.migrate import ledger, stored
    from tecnorev.migrate.commands._connect import migration_connection
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.revisions import module_of_script
    from tecnorev.migrate.status import last_applied

    reason = " ".join(options.reason.split())
    if len(reason) < MIN_REASON:
        print(
            f"error: give a reason of at least {MIN_REASON} characters: it is what the next "
            "person reading 'db log' has to go on",
            file=sys.stderr,
        )
        return 1
    from alembic.util import CommandError

    scripts = ScriptDirectory.from_config(config)
    try:
        script = scripts.get_revision(options.revision)
    except CommandError:
        script = None
    if script is None or script.revision != options.revision:
        from tecnorev.migrate.errors import BadArgument

        raise BadArgument(f"no installed revision is named {options.revision!r}")
    registry = get_registry()
    with migration_connection(config, lock=True) as connection, connection.begin():
        has_ledger = sa.inspect(connection).has_table(ledger.migration_log.name)
        applied = last_applied(connection).get(script.revision) if has_ledger else None
        if applied is None or not applied.checksum:
            print(
                f"error: the ledger has no checksum of {script.revision} (not applied to this "
                "database, or applied before the ledger): there is nothing to repair",
                file=sys.stderr,
            )
            return 1
        if ledger.matches(applied.checksum, script.path):
            print(f"{script.revision} matches the file as applied: nothing to repair")
            return 0
        module = module_of_script(script, registry)
        now = ledger.file_checksum(script.path)
        ledger.record(
            connection,
            revision=script.revision,
            module=module,
            direction="repair",
            distribution=registry[module].distribution if module else None,
            parents=ledger.parents_of(script),
            checksum=now,
            note=reason,
        )
        stored.store(connection, script.revision, module, script.path)
    print(
        f"recorded the edit of {script.revision} (sha256 {applied.checksum[:12]} -> "
        f"{(now or '')[:12]}): {reason}"
    )
    return 0
