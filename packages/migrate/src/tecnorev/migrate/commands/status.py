"""``tecnorev db status``: where each module's schema stands, with an exit code to gate on."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

from alembic.config import Config

from tecnorev.migrate.project import project

if TYPE_CHECKING:
    from tecnorev.migrate.status import ModuleStatus, StatusReport

NAME = "status"
HELP = (
    "one row per module: installed version, database revision, code head, pending count and "
    "state; exit 0 only when every installed module is up to date or has only contract "
    "revisions pending (1 pending, 3 cannot read the database, 4 an applied migration file "
    "was edited, 5 database ahead of the code or a module not installed)"
)

_COLUMNS = ("MODULE", "VERSION", "DATABASE", "CODE HEAD", "PENDING", "STATE")


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(config: Config, options: Namespace) -> int:
    import json

    from alembic.script import ScriptDirectory

    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.status import configured_url, open_database, read_status

    url = configured_url(config)
    scripts = ScriptDirectory.from_config(config)
    with open_database(url) as connection:
        report = read_status(connection, scripts, get_registry())
        exists = connection is not None
    shown = _hide_password(url)
    if options.json:
        print(json.dumps({"database": shown, **report.to_json()}, indent=2))
        return report.exit_code
    print(f"database: {shown}" + ("" if exists else " (no database file yet)"))
    print(_table(report))
    for line in _advice(report):
        print(line)
    return report.exit_code


def _hide_password(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def _cells(row: ModuleStatus) -> tuple[str, ...]:
    return (
        row.module,
        row.version or "-",
        ",".join(row.database_revisions) or "-",
        ",".join(row.code_heads) or "-",
        str(row.pending) if row.installed else "-",
        row.state.value,
    )


def _table(report: StatusReport) -> str:
    rows = [_COLUMNS, *(_cells(m) for m in report.modules)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    pending = _COLUMNS.index("PENDING")
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i == pending else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _advice(report: StatusReport) -> list[str]:
    """What to do about each finding, most urgent first."""
    from tecnorev.migrate.status import State

    lines: list[str] = []
    for row in report.modules:
        for edited in row.edited:
            when = f" on {edited.applied_at:%Y-%m-%d %H:%M} UTC" if edited.applied_at else ""
            change = "deleted" if edited.checksum_now is None else "edited"
            lines.append(
                f"{row.module}: {edited.revision} was {change} after it was applied{when} "
                f"({edited.path}). The database ran the old text: restore the file and put "
                "the change in a new revision "
                f"({project().command} generate {row.module} -m '...'); for a reviewed edit "
                "that changes nothing the database needs: "
                f"{project().command} repair {edited.revision} --reason '...'."
            )
    for row in report.modules:
        revisions = ", ".join(row.database_revisions)
        if row.state is State.AHEAD:
            lines.append(
                f"{row.module}: the database has {revisions}, which this installation of "
                f"{row.distribution} {row.version} does not know: install the newer version "
                "(expected while a rolling deploy is under way)"
                + (
                    f", or go back to this version: {project().command} downgrade "
                    f"{row.module}@{row.back_to} (runs their stored downgrade())."
                    if row.back_to and not row.back_refused
                    else f"; going back from the stored sources is not possible: "
                    f"{row.back_refused}."
                    if row.back_refused
                    else "."
                )
            )
        elif row.state is State.STRANDED:
            lines.append(f"{row.module}: {row.note}.")
        elif row.state is State.NOT_INSTALLED:
            lines.append(
                f"{row.module}: the database records {revisions}, but the module is not "
                f"installed: pip install tecnorev-{row.module}, or set it aside with "
                f"'{project().command} forget {row.module}'."
            )
        elif row.state in (State.CONTRACT_PENDING, State.PENDING) and row.note:
            lines.append(f"{row.module}: {row.note}.")
    pending = [row for row in report.modules if row.pending and row.state is State.PENDING]
    if pending:
        count = sum(row.pending for row in pending)
        names = ", ".join(row.module for row in pending)
        lines.append(f"{count} revision(s) pending in {names}: {project().command} upgrade heads")
    return lines
