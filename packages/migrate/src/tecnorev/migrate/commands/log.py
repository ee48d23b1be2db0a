"""``tecnorev db log [<module>]``: the migration ledger, oldest first (the newest row is the
last line, next to the prompt, as in a log file)."""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

from alembic.config import Config

if TYPE_CHECKING:
    from tecnorev.migrate.status import LedgerEntry

NAME = "log"
HELP = (
    "every revision applied, reverted, stamped, repaired or failed (module, version, "
    "checksum, when, who, how long, why), oldest first; kept even after 'downgrade base'"
)

_COLUMNS = (
    "WHEN (UTC)", "MODULE", "REVISION", "PHASE", "DIRECTION", "VERSION", "MS", "WHO", "SHA256",
    "NOTE",
)  # fmt: skip


def _positive(value: str) -> int:
    from argparse import ArgumentTypeError

    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("module", nargs="?", help="only this module's rows")
    parser.add_argument("--limit", type=_positive, help="only the newest N rows")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(config: Config, options: Namespace) -> int:
    import json

    from tecnorev.migrate.modules import get_registry
    from tecnorev.migrate.status import configured_url, open_database, read_log

    with open_database(configured_url(config)) as connection:
        entries = read_log(connection, options.module, options.limit)
    registry = get_registry()
    phases = _phases(config)
    if options.module and not entries and options.module not in registry:
        from tecnorev.migrate.errors import UnknownModule, did_you_mean

        names = registry.names
        raise UnknownModule(
            f"no ledger row names module {options.module!r}, and no installed module has that "
            f"name (installed: {', '.join(names)}).{did_you_mean(options.module, names)}"
        )
    if options.json:
        print(
            json.dumps(
                [{**e.to_json(), "phase": phases.get(e.revision)} for e in entries], indent=2
            )
        )
        return 0
    if not entries:
        whose = f" for module {options.module!r}" if options.module else ""
        print(f"no migration recorded{whose} yet")
        return 0
    print(_table(entries, phases))
    return 0


def _phases(config: Config) -> dict[str, str]:
    """The phase of each installed revision (the ledger's revisions whose files are gone have
    none to show)."""
    from alembic.script import ScriptDirectory

    from tecnorev.migrate.phases import phase_of
    from tecnorev.migrate.status import all_scripts

    found = all_scripts(ScriptDirectory.from_config(config))
    return {revision: phase_of(script).value for revision, script in found.items()}


def _cells(entry: LedgerEntry, phases: dict[str, str]) -> tuple[str, ...]:
    return (
        f"{entry.at:%Y-%m-%d %H:%M:%S}",
        entry.module or "?",
        entry.revision,
        phases.get(entry.revision, "-"),
        entry.direction,
        entry.distribution_version or "-",
        "-" if entry.duration_ms is None else str(entry.duration_ms),
        f"{entry.os_user or '?'}@{entry.host or '?'}",
        (entry.checksum or "-")[:12],
        entry.note or "",
    )


def _table(entries: list[LedgerEntry], phases: dict[str, str]) -> str:
    rows = [_COLUMNS, *(_cells(e, phases) for e in entries)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    right = _COLUMNS.index("MS")
    return "\n".join(
        "  ".join(
            cell.rjust(width) if i == right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )
