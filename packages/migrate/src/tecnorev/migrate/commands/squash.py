"""``tecnorev db squash <module> [--to REV]``: one revision for a range of a module's history.

Writes a revision that ``replaces`` the module's revisions from its first up to ``--to``
(default: its head), checks on scratch databases that it builds what they build, and leaves
the originals in place: databases partway through the range need them until they are past it
(``tecnorev.migrate.squash`` explains the rules).  Data migrations in the range are refused
unless ``--keep-data`` keeps them.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

from alembic.config import Config

if TYPE_CHECKING:
    from pathlib import Path

NAME = "squash"
HELP = (
    "write one revision replacing <module>'s revisions up to --to (default: its head); fresh "
    "databases run it, databases partway through go on with the originals"
)


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", help="name of an installed module")
    parser.add_argument("--to", metavar="REV", help="the last revision to squash (default: head)")
    parser.add_argument("-m", "--message", help="the new revision's first docstring line")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the range's data migrations (SQL run, rows written) in the squash",
    )
    parser.add_argument("--rev-id", help="the new revision's id (default: a new one)")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip building both sides on scratch SQLite databases to compare them",
    )


def run(config: Config, options: Namespace) -> int:
    import sys

    from tecnorev.migrate.errors import MigrationError

    try:
        path, replaced = _write(config, options)
    except MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not options.no_check:
        problems = _check(config)
        if problems:
            path.unlink()
            print("error: the squash does not build what the originals build; not written:")
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
    from tecnorev.migrate.project import project

    checked = "" if options.no_check else " (checked: both build the same schema and rows)"
    print(
        f"wrote {path}: replaces {len(replaced)} revisions, {replaced[0]} to {replaced[-1]}"
        f"{checked}.\nFresh databases run it; a database partway through the range goes on "
        f"with the originals. Keep them until every database is past {replaced[-1]} "
        f"('{project().command} status' on each), then delete them."
    )
    return 0


def _write(config: Config, options: Namespace) -> tuple[Path, list[str]]:
    from datetime import UTC, datetime

    from alembic.script import ScriptDirectory

    from tecnorev.migrate import squash
    from tecnorev.migrate.errors import MigrationError
    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.revisions import module_of_script, new_revision_id
    from tecnorev.migrate.squash_file import data_steps, render
    from tecnorev.migrate.status import all_scripts

    registry = get_registry()
    registry[options.module]  # an unknown name is a usage error naming the closest ones
    scripts = ScriptDirectory.from_config(config)
    found = all_scripts(scripts)
    mine = {r: s for r, s in found.items() if module_of_script(s, registry) == options.module}
    tip = options.to or _single_head(mine, options.module)
    if tip not in mine:
        raise MigrationError(f"{tip!r} is not a revision of {options.module}")
    chosen = _oldest_first(tip, mine)
    if len(chosen) < 2:
        raise MigrationError(f"{tip} is {options.module}'s only revision: nothing to squash")
    for script in chosen:
        if squash.replaces(script) and any(r in found for r in squash.replaces(script)):
            raise MigrationError(
                f"{script.revision} is itself a squash whose originals are still shipped: "
                "delete them first, or squash only the revisions after it"
            )
    data = {s.revision: data_steps(s) for s in chosen}
    data = {r: steps for r, steps in data.items() if steps}
    if data and not options.keep_data:
        lines = "\n".join(f"  {r}: {', '.join(steps)}" for r, steps in data.items())
        raise MigrationError(
            f"{len(data)} revision(s) in the range run SQL or touch rows:\n{lines}\nPass "
            "--keep-data to keep them in the squash (fresh databases run them as they ran), "
            "or end the range before the first with --to"
        )
    revision = options.rev_id or new_revision_id(options.module)
    created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    message = options.message or f"{options.module}: {len(chosen)} revisions squashed"
    text = render(options.module, revision, chosen, created, message)
    path = registry[options.module].migrations_path() / f"{revision}_squash.py"
    path.write_text(text, encoding="utf-8")
    _format(path)
    return path, [s.revision for s in chosen]


def _single_head(mine: dict, module: str) -> str:
    from tecnorev.migrate.errors import MigrationError

    parents = {p for s in mine.values() for p in s._versioned_down_revisions}
    heads = sorted(r for r in mine if r not in parents)
    if len(heads) != 1:
        raise MigrationError(
            f"{module} has {len(heads)} heads ({', '.join(heads)}): name the last revision "
            "to squash with --to, or merge the heads first"
        )
    return heads[0]


def _oldest_first(tip: str, mine: dict) -> list:
    """``tip`` and its ancestors in the module, parents before children (ties by id)."""
    import graphlib

    wanted: dict[str, list[str]] = {}
    stack = [tip]
    while stack:
        revision = stack.pop()
        if revision in wanted:
            continue
        parents = [p for p in mine[revision]._versioned_down_revisions if p in mine]
        wanted[revision] = parents
        stack.extend(parents)
    sorter = graphlib.TopologicalSorter(wanted)
    sorter.prepare()
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered += ready
        sorter.done(*ready)
    return [mine[r] for r in ordered]


def _format(path: object) -> None:
    """Format as new revisions are formatted (ruff, when installed)."""
    import subprocess
    import sys
    from importlib.util import find_spec

    if find_spec("ruff") is not None:
        subprocess.run(
            [sys.executable, "-m", "ruff", "format", "-q", str(path)], check=False, timeout=120
        )


def _check(config: Config) -> list[str]:
    """Build a fresh database through the squash and one through the originals; compare."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.cli import make_config
    from tecnorev.migrate.scratch import quiet_alembic, scratch_database
    from tecnorev.migrate.verify import check_squashes

    with scratch_database("sqlite://") as url:
        squashed = make_config(ini=config.config_file_name, url=url, scratch=True)
        with quiet_alembic(squashed):
            command.upgrade(squashed, "heads")
        result = check_squashes(config, ScriptDirectory.from_config(config), url)
    return [p.message for p in result.problems]
