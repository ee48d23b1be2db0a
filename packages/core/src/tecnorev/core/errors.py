"""Errors the platform raises for the people operating it: each message says what to do next."""

from __future__ import annotations


class TecnorevError(Exception):
    """Base class: the message is meant for a person and is printed without a traceback."""


class ConfigError(TecnorevError):
    """The configuration (environment, ``.env``) is missing or invalid."""


class DatabaseUnavailable(TecnorevError):
    """The configured database cannot be reached."""


class DiscoveryError(TecnorevError):
    """The installed modules do not form a consistent whole."""


class MigrationError(TecnorevError):
    """A migration command was refused or cannot run as asked."""
