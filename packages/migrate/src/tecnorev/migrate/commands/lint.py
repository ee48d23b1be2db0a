"""``tecnorev db lint [<module>] [--all] [--json]``: flag what would lock or rewrite big
PostgreSQL tables, or lose data, before it reaches production.

By default the revisions not yet applied to the configured database are linted (every
revision when the database cannot be read); ``--all`` lints every revision.  Exit status 1 when
a finding is not acknowledged in its migration file.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

from alembic.config import Config

from tecnorev.migrate.project import project

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.lint import Finding
    from tecnorev.migrate.modules import Registry

NAME = "lint"
HELP = (
    "flag operations that lock or rewrite big PostgreSQL tables or lose data (the revisions "
    "not yet applied, by default); non-zero exit on a finding not acknowledged"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", nargs="?", help="lint only this module's revisions")
    parser.add_argument(
        "--all",
        action="store_true",
        dest="lint_all",
        help="lint every revision, applied or not",
    )
    parser.add_argument("--json", action="store_true", dest="as_json", help="JSON output")
    parser.add_argument("--rules", action="store_true", help="list the rules and exit")


def run(config: Config, options: Namespace) -> int:
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.lint import blocking, lint_revision
    from tecnorev.migrate.modules import get_registry

    if options.rules:
        _print_rules()
        return 0
    registry = get_registry()
    if options.module:
        registry[options.module]  # an unknown name is refused with the installed ones listed
    scripts = ScriptDirectory.from_config(config)
    revisions, scope = _select(config, scripts, registry, options)
    findings = [finding for script in revisions for finding in lint_revision(script)]
    if options.as_json:
        _print_json(findings, revisions, scope)
    else:
        _print_text(findings, revisions, scope, options)
    return 1 if blocking(findings) else 0


def _select(
    config: Config, scripts: ScriptDirectory, registry: Registry, options: Namespace
) -> tuple[list[Script], str]:
    """The revisions to lint, base first, and a word on which they are."""
    from tecnorev.migrate.revisions import module_of_script

    everything = list(reversed(list(scripts.walk_revisions())))
    if options.module:
        everything = [s for s in everything if module_of_script(s, registry) == options.module]
    if options.lint_all:
        return everything, "all"
    applied, unreadable = _applied(config, scripts)
    if applied is None:
        return everything, f"all: the database cannot be read ({unreadable})"
    return [s for s in everything if s.revision not in applied], "pending"


def _applied(config: Config, scripts: ScriptDirectory) -> tuple[set[str] | None, str]:
    """The revisions the configured database has applied (None, and why, if it cannot be
    read).  A plain connection: no migration lock, and a missing SQLite file stays missing."""
    from pathlib import Path

    import sqlalchemy as sa

    from tecnorev.migrate.connect import bounded_engine, check_connection, describe_url
    from tecnorev.migrate.environment import database_url
    from tecnorev.migrate.errors import DatabaseUnavailable
    from tecnorev.migrate.state import recorded_versions

    url = sa.make_url(database_url(config))
    file = url.database if url.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).exists():
        return set(), ""  # no database yet: everything is pending
    engine = bounded_engine(url, poolclass=sa.pool.NullPool)
    try:
        check_connection(engine)
        with engine.connect() as connection:
            recorded = recorded_versions(connection)
    except DatabaseUnavailable as exc:
        return None, str(exc)
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        return None, f"{describe_url(url)}: {reason}"
    finally:
        engine.dispose()
    known = tuple(r for r in recorded if _is_known(scripts, r))  # others: uninstalled modules
    if not known:
        return set(), ""
    return {s.revision for s in scripts.iterate_revisions(known, "base")}, ""


def _is_known(scripts: ScriptDirectory, revision: str) -> bool:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return scripts.get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def _print_text(
    findings: list[Finding], revisions: list[Script], scope: str, options: Namespace
) -> None:
    import sys

    from tecnorev.migrate.lint import blocking, format_findings

    if not revisions:
        whose = f"module {options.module!r}" if options.module else "the installed modules"
        print(
            f"nothing to lint: every revision of {whose} is applied "
            f"({project().command} lint --all lints them anyway)"
        )
        return
    if scope.startswith("all:"):
        print(f"note: linting every revision; {scope.removeprefix('all: ')}", file=sys.stderr)
    if findings:
        print(format_findings(findings))
        print()
    failing = len(blocking(findings))
    acknowledged = len(findings) - failing
    counted = f"{len(revisions)} revision{'s' if len(revisions) != 1 else ''}"
    label = scope.split(":")[0]
    if not findings:
        print(f"{counted} linted ({label}): clean")
        return
    print(
        f"{counted} linted ({label}): {failing} finding{'s' if failing != 1 else ''} to fix, "
        f"{acknowledged} acknowledged"
    )
    if failing:
        print(
            "Fix them, or acknowledge one on its line: # tecnorev: allow <rule id> <reason> "
            f"({project().command} lint --rules lists the rules)"
        )


def _print_json(findings: list[Finding], revisions: list[Script], scope: str) -> None:
    from tecnorev.migrate.lint import findings_json

    print(findings_json(findings, scope=scope, revisions=[s.revision for s in revisions]))


def _print_rules() -> None:
    from tecnorev.migrate.lint import RULES

    for rule in RULES.values():
        print(f"{rule.id}  {rule.title}")
        print(f"       why: {rule.why}")
        print(f"       instead: {rule.instead}")
