"""The exit codes and the message prefix of every ``tecnorev`` command (``tecnorev db`` and
``tecnorev-migrate`` included): one failure kind, one code, everywhere.  docs/cli.md shows
this table to users; a test runs every command against it.

Errors carry their kind as an ``exit_code`` class attribute, so a command line maps any error
it catches with :func:`code_of` and never decides per command.
"""

from __future__ import annotations

from enum import IntEnum

PREFIX = "error: "


class ExitCode(IntEnum):
    OK = 0
    # the operation failed or was refused; for gates (db status, db check, db verify, backfill
    # status): there is something to do
    FAILED = 1
    # unknown command, option or module, or a bad argument (click's own usage errors are 2)
    USAGE = 2
    # the database cannot be reached, or a setting (DATABASE_URL, TECNOREV_*) is invalid
    UNAVAILABLE = 3
    # a revision file or a project file is broken: it does not load, or an applied revision
    # was edited afterwards, or the installed modules do not fit together
    BROKEN = 4
    # db status: the database has revisions the installed code lacks (ahead, a module not
    # installed, stranded)
    AHEAD = 5


def code_of(exc: BaseException) -> ExitCode:
    """The code for an error a command let through: its declared kind, else a revision file
    that does not load, else a failed operation."""
    declared = getattr(exc, "exit_code", None)
    if isinstance(declared, int):
        return ExitCode(declared)
    if isinstance(exc, SyntaxError | ImportError):
        return ExitCode.BROKEN
    return ExitCode.FAILED
