"""``tecnorev db generate <module> -m "..."``: the guide's "generate, review, apply" for one module.

The comparison runs against a scratch database brought to every module's head, so it works
whatever state the developer's own database is in, and sees only the module's own tables.
A change that would break the release still running during a rolling deploy (a rename, a type
change, NOT NULL on an existing column, a dropped column) is written as two revisions: the
expand one, and a contract one (``phase = "contract"``) after it.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from pathlib import Path

from alembic.config import Config

from tecnorev.migrate.project import project

NAME = "generate"
HELP = (
    "write a new revision for one module from the change in its models (compared against a "
    "scratch database at every head), or an empty one to fill in by hand with --empty"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", help="the module whose models changed")
    parser.add_argument("-m", "--message", required=True, help="what the revision does")
    parser.add_argument(
        "--empty", action="store_true", help="an empty revision on the module's head (manual)"
    )
    parser.add_argument(
        "--one-phase",
        action="store_true",
        help="write breaking changes as plain alembic operations in one revision (lint flags "
        "them): for a table small enough to lock, or a database no old release uses",
    )
    parser.add_argument(
        "--no-renames",
        action="store_true",
        help="a column dropped and one of the same type added are not read as a rename",
    )
    parser.add_argument(
        "--scratch-url",
        help="an empty database to compare against (default: a throwaway database on the "
        "configured PostgreSQL server, or a temporary SQLite file)",
    )


def run(config: Config, options: Namespace) -> int:
    from alembic import command

    from tecnorev.migrate.autogen_phases import PHASES, Phases
    from tecnorev.migrate.cli import make_config
    from tecnorev.migrate.environment import database_url
    from tecnorev.migrate.lint import format_findings, lint_paths
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.scratch import quiet_alembic, scratch_database

    module = get_registry()[options.module].name  # an unknown module is named with the installed
    head = f"{module}@head"
    phases = Phases(renames=not options.no_renames)
    if options.empty:
        written = command.revision(config, options.message, head=head)
    else:
        with scratch_database(options.scratch_url or database_url(config)) as url:
            scratch = make_config(ini=config.config_file_name, url=url, scratch=True)
            with quiet_alembic(scratch):
                command.upgrade(scratch, "heads")
            scratch.attributes["tecnorev_skip_empty"] = True
            if not options.one_phase:
                scratch.attributes[PHASES] = phases
            written = command.revision(scratch, options.message, autogenerate=True, head=head)
    if not written:
        print(
            f"no change in the models of {module!r}: nothing written. For a hand-written "
            f"revision use: {project().command} generate {module} -m '...' --empty"
        )
        return 1
    scripts = [s for s in (written if isinstance(written, list) else [written]) if s is not None]
    for script in scripts:
        if script.revision in phases.contract:
            _mark_contract(Path(script.path))
        phase = " (contract)" if script.revision in phases.contract else ""
        print(f"wrote {script.path}{phase}")
    if phases.contract:
        print("written in two phases, since the running release would break on it:")
        for line in phases.said:
            print(f"  {line}")
        print(
            f"the expand revision runs with `{project().command} upgrade heads`, the contract "
            f"one with `{project().command} contract` once no replica runs the old release"
        )
    findings = lint_paths([s.path for s in scripts])
    if findings:
        print(f"lint:\n{format_findings(findings)}")
    else:
        print("lint: nothing that locks or rewrites a big table or loses data")
    print(f"review it, then: {project().command} upgrade heads")
    return 0


def _mark_contract(path: Path) -> None:
    """``phase = "contract"`` above the revision's identifiers (templates have no slot for
    it, and one revision per template run is all Alembic renders)."""
    text = path.read_text(encoding="utf-8")
    marker = "\nrevision: str = "
    if marker in text and "\nphase = " not in text:
        text = text.replace(marker, '\nphase = "contract"\n' + marker, 1)
        path.write_text(text, encoding="utf-8")
