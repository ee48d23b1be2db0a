"""Errors the engine raises for the people running it: each message says what to do next.

Each class names its exit code (:mod:`tecnorev.migrate.exitcodes`)."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import get_close_matches

from tecnorev.migrate.exitcodes import ExitCode


class MigrateError(Exception):
    """Base class: the message is meant for a person and is printed without a traceback."""

    exit_code = ExitCode.FAILED


class ConfigError(MigrateError):
    """The configuration (environment, ``.env``, ``alembic.ini``) is missing or invalid."""

    exit_code = ExitCode.UNAVAILABLE


class DatabaseUnavailable(MigrateError):
    """The configured database cannot be reached."""

    exit_code = ExitCode.UNAVAILABLE


class DiscoveryError(MigrateError):
    """The installed modules do not form a consistent whole."""

    exit_code = ExitCode.BROKEN


class MigrationError(MigrateError):
    """A migration command was refused or cannot run as asked."""


class BrokenRevision(MigrateError):
    """A revision file cannot be used as it is (it names a revision nobody has, ...)."""

    exit_code = ExitCode.BROKEN


class BadArgument(MigrateError):
    """A command was given an argument it cannot use (a usage error)."""

    exit_code = ExitCode.USAGE


class UnknownModule(DiscoveryError):
    """A command was given a module name no installed module has (a usage error, not a
    broken installation)."""

    exit_code = ExitCode.USAGE


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest known names, or ''."""
    close = get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def unknown_module(name: str, installed: Iterable[str]) -> UnknownModule:
    names = list(installed)
    return UnknownModule(
        f"no installed module named {name!r} (installed: {', '.join(names) or 'none'})."
        + did_you_mean(name, names)
    )
