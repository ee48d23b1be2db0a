"""``tecnorev db sql <module> [range]``: the SQL a module's pending migrations would run.

Alembic's offline mode, aimed at one module.  Without a range it starts from what the configured
database records (read only; from base when there is no database), so the version-table
statements are the ones that database needs.  Only the SQL goes to stdout; what is included and
why goes to stderr, so the output can be piped to a file or to ``psql``.
"""

from __future__ import annotations

import os
import sys
from argparse import ArgumentParser, Namespace
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.config import Config

from tecnorev.migrate.project import project

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.modules import Registry

NAME = "sql"
HELP = (
    "print the SQL a module's pending migrations would run (offline: nothing is written); "
    "range: FROM:TO as for 'upgrade --sql', default from the database's state to <module>@head"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", help="name of an installed module")
    parser.add_argument(
        "range",
        nargs="?",
        help="FROM:TO (e.g. base:catalog@head), or TO alone to start from the database's "
        "state; default: the database's state to <module>@head",
    )


def run(config: Config, options: Namespace) -> int:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.modules import get_registry

    registry = get_registry()
    registry[options.module]  # an unknown name is a usage error naming the closest ones
    scripts = ScriptDirectory.from_config(config)
    note = _Notes(quiet=bool(getattr(options, "quiet", False)))
    start: str | tuple[str, ...] | None
    start, destination = _parse_range(options.range, options.module)
    _check_destination(scripts, destination, options.module, registry)
    if start is None:
        start = _start_from_database(config, scripts, options.module, registry, note)
    steps = _plan(scripts, start, destination, options.range)
    _check_scope(steps, options.module, scripts, registry)
    if not steps:
        _refuse_downgrade(scripts, start, destination, options.range)
        note(f"nothing to run: {options.module} is already at {destination}")
        return 0
    _describe(steps, options.module, registry, note)
    note(f"dialect: {_dialect(config)} (from DATABASE_URL)")
    try:
        _offline_upgrade(config, scripts, start, destination)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (head, a pager) stopped early: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


class _Notes:
    """Explanations for the person running the command: stderr, so stdout stays pure SQL."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(f"-- {message}", file=sys.stderr)


def _parse_range(text: str | None, module: str) -> tuple[str | None, str]:
    """(start, destination); start None means "where the database is"."""
    from alembic.util import CommandError

    if text is None:
        return None, f"{module}@head"
    start, sep, destination = text.partition(":")
    if not sep:
        start, destination = "", text
    elif not start:
        start = "-"  # an explicit but empty start is a mistake, not "from the database"
    if ":" in destination or start == "-" or not destination:
        raise CommandError(
            f"bad range {text!r}: expected FROM:TO (e.g. base:{module}@head or "
            f"<revision>:{module}@head) or TO alone"
        )
    return start or None, destination


# --------------------------------------------------------------------------- the starting point


def _start_from_database(
    config: Config, scripts: ScriptDirectory, module: str, registry: Registry, note: _Notes
) -> tuple[str, ...]:
    """The revisions the configured database records (plus those a reinstalled module gets
    back on the next upgrade); () when there is no database to read."""
    from alembic.util import CommandError

    from tecnorev.migrate.environment import database_url
    from tecnorev.migrate.errors import DatabaseUnavailable, MigrationError
    from tecnorev.migrate.state import _heads_only

    url = database_url(config)
    engine, reason = _read_only_engine(url)
    if engine is None:
        note(f"{reason}: starting from base")
        return ()
    try:
        recorded, restored = _recorded(engine, scripts)
    except MigrationError as exc:  # a revision of an uninstalled module is recorded
        raise CommandError(str(exc)) from exc
    except (DatabaseUnavailable, _Unreachable) as exc:
        note(f"cannot read the database, so starting from base: {exc}")
        return ()
    finally:
        engine.dispose()
    if restored:
        note(
            f"{', '.join(restored)} (set aside by 'forget') will be recorded again by the next "
            "upgrade, before it migrates: counted as applied here"
        )
        recorded = tuple(sorted(_heads_only(scripts, {*recorded, *restored})))
    if not recorded:
        note("the database records no revision yet: starting from base")
        return ()
    mine = _current_of(scripts, recorded, module, registry)
    where = ", ".join(mine) if mine else "base (nothing of it applied)"
    note(f"{module} in the database: {where}")
    return recorded


class _Unreachable(Exception):
    pass


def _read_only_engine(url: str) -> tuple[sa.Engine | None, str]:
    """An engine that cannot write: SQLite opened with mode=ro (never creating the file), a
    PostgreSQL session in read-only mode."""
    import sqlite3

    import sqlalchemy as sa
    from sqlalchemy import pool

    from tecnorev.migrate.connect import bounded_engine

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:":
            return None, "an in-memory SQLite database"
        if not Path(path).is_file():
            return None, f"no SQLite file at {path}"
        uri = Path(path).resolve().as_uri() + "?mode=ro"

        def connect() -> sqlite3.Connection:
            return sqlite3.connect(uri, uri=True)

        return sa.create_engine("sqlite://", creator=connect, poolclass=pool.NullPool), ""
    connect_args = {}
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"options": "-c default_transaction_read_only=on"}
    return bounded_engine(url, connect_args=connect_args, poolclass=pool.NullPool), ""


def _recorded(engine: sa.Engine, scripts: ScriptDirectory) -> tuple[tuple[str, ...], list[str]]:
    """(alembic_version's rows, forgotten revisions whose module is installed again)."""
    import sqlalchemy as sa

    from tecnorev.migrate.connect import check_connection
    from tecnorev.migrate.ledger import forgotten_revision
    from tecnorev.migrate.state import check_recorded_versions, recorded_versions

    check_connection(engine)
    try:
        with engine.connect() as connection:
            check_recorded_versions(connection, scripts)
            recorded = tuple(recorded_versions(connection))
            restored: list[str] = []
            if sa.inspect(connection).has_table(forgotten_revision.name):
                rows = connection.execute(sa.select(forgotten_revision.c.revision)).scalars()
                restored = [r for r in rows if _known(scripts, r)]
            connection.rollback()
    except sa.exc.OperationalError as exc:
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise _Unreachable(detail) from exc
    return recorded, restored


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _current_of(
    scripts: ScriptDirectory, recorded: Sequence[str], module: str, registry: Registry
) -> list[str]:
    """The module's applied revisions that nothing else of it builds on (its current
    revision(s)), counting those implied by other modules' depends_on."""
    applied = [s for s in scripts.get_all_current(tuple(recorded)) if _owner(s, registry) == module]
    covered = {
        ancestor.revision
        for script in applied
        for ancestor in scripts.iterate_revisions(script.revision, "base")
        if ancestor.revision != script.revision
    }
    return sorted(s.revision for s in applied if s.revision not in covered)


# --------------------------------------------------------------------------- the plan


def _plan(
    scripts: ScriptDirectory,
    start: str | tuple[str, ...],
    destination: str,
    text: str | None,
) -> list[Script]:
    """The revisions the upgrade would run, in order, exactly as alembic computes them."""
    from alembic.util import CommandError

    try:
        lower = _lower(scripts, start)
        # alembic's own upgrade passes a tuple of heads too; the annotation leaves it out
        steps = scripts._upgrade_revs(destination, lower)  # type: ignore[arg-type]
        return [step.revision for step in steps]
    except CommandError as exc:
        if text is None:
            raise
        raise CommandError(f"bad range {text!r}: {exc}") from exc


def _lower(scripts: ScriptDirectory, start: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(start, tuple):
        return start
    if start == "base":
        return ()
    return (scripts.get_revision(start).revision,)


@lru_cache(maxsize=4)
def _folders(registry: Registry) -> dict[Path, str]:
    return {m.migrations_path().resolve(): m.name for m in registry.modules}


def _owner(script: Script, registry: Registry) -> str | None:
    # Each module's folder is resolved once, not once per script as module_of_script does.
    return _folders(registry).get(Path(script.path).resolve().parent)


def _check_destination(
    scripts: ScriptDirectory, destination: str, module: str, registry: Registry
) -> None:
    """The range must end in the named module (relative targets are checked by the plan)."""
    from alembic.script import Script
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        targets = scripts.revision_map.get_revisions(destination)
    except (RevisionError, CommandError, ValueError):
        return  # e.g. catalog@+1: resolved relative to the start, scope-checked afterwards
    # (a relative target walked down past the first revision is "base": no module's)
    owners = {_owner(t, registry) for t in targets if isinstance(t, Script)}
    if owners - {module}:
        named = ", ".join(sorted(str(o) for o in owners - {module}))
        raise CommandError(
            f"{destination!r} names revisions of {named}, not of {module}: end the range in "
            f"{module}, e.g. {module}@head (or run: {project().command} sql <module>)"
        )


def _refuse_downgrade(
    scripts: ScriptDirectory, start: str | tuple[str, ...], destination: str, text: str | None
) -> None:
    from alembic.util import CommandError

    try:
        # alembic's own downgrade passes a tuple of heads too; the annotation leaves it out
        down = scripts._downgrade_revs(destination, _lower(scripts, start))  # type: ignore[arg-type]
    except CommandError:
        return
    if down:
        reverted = ", ".join(step.revision.revision for step in down)
        raise CommandError(
            f"bad range {text!r}: it goes down (it would revert {reverted}); "
            f"'{project().command} sql' shows upgrades. "
            f"The SQL of a downgrade: {project().command} downgrade FROM:TO --sql"
        )


def _check_scope(
    steps: Sequence[Script], module: str, scripts: ScriptDirectory, registry: Registry
) -> None:
    """Refuse a range that reaches modules the named one does not need."""
    from alembic.util import CommandError

    mine = [s.revision for s in steps if _owner(s, registry) == module]
    needed = {a.revision for rev in mine for a in scripts.iterate_revisions(rev, "base")}
    stray = {_owner(s, registry) or s.revision for s in steps if s.revision not in needed}
    if stray:
        listed = ", ".join(sorted(stray))
        raise CommandError(
            f"that range also migrates {listed}, which {module} does not need; "
            f"'{project().command} sql' shows one module at a time: "
            f"{project().command} sql <module>"
        )


def _describe(steps: Sequence[Script], module: str, registry: Registry, note: _Notes) -> None:
    mine = [s.revision for s in steps if _owner(s, registry) == module]
    note(f"pending for {module}: {', '.join(mine)}")
    needed: dict[str, list[str]] = {}
    for script in steps:
        if script.revision not in mine:
            needed.setdefault(str(_owner(script, registry)), []).append(script.revision)
    if needed:
        note(
            f"also needed first, because {module} depends on them and they are not applied "
            f"(alembic applies them with it): {_summary(needed)}"
        )


def _summary(revisions: dict[str, list[str]], modules_shown: int = 12) -> str:
    parts = [
        f"{name}: {', '.join(ids) if len(ids) <= 3 else f'{len(ids)} revisions'}"
        for name, ids in revisions.items()
    ]
    hidden = len(parts) - modules_shown
    return "; ".join(parts[:modules_shown]) + (f"; and {hidden} more modules" if hidden > 0 else "")


def _dialect(config: Config) -> str:
    import sqlalchemy as sa

    from tecnorev.migrate.environment import database_url

    return sa.make_url(database_url(config)).get_backend_name()


def _offline_upgrade(
    config: Config, scripts: ScriptDirectory, start: str | tuple[str, ...], destination: str
) -> None:
    """``alembic upgrade FROM:TO --sql`` (command.upgrade), except that FROM may be several
    revisions: the command line accepts only one."""
    from alembic.runtime.environment import EnvironmentContext

    def upgrade(heads: tuple[str, ...], _context: object) -> list:
        # as alembic's own upgrade does, with the tuple of heads its annotation leaves out
        return scripts._upgrade_revs(destination, heads)  # type: ignore[arg-type]

    with EnvironmentContext(
        config,
        scripts,
        fn=upgrade,
        as_sql=True,
        starting_rev=None if start == "base" else start,
        destination_rev=destination,
    ):
        scripts.run_env()
