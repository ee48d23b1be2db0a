"""Errors the engine raises for the people running it: each message says what to do next."""

from __future__ import annotations


class MigrateError(Exception):
    """Base class: the message is meant for a person and is printed without a traceback."""


class ConfigError(MigrateError):
    """The configuration (environment, ``.env``, ``alembic.ini``) is missing or invalid."""


class DatabaseUnavailable(MigrateError):
    """The configured database cannot be reached."""


class DiscoveryError(MigrateError):
    """The installed modules do not form a consistent whole."""


class MigrationError(MigrateError):
    """A migration command was refused or cannot run as asked."""
