"""Errors the platform raises for the people operating it: each message says what to do next.

Each class names its exit code (the one table, :mod:`tecnorev.migrate.exitcodes`)."""

from __future__ import annotations

import math

from tecnorev.migrate.exitcodes import ExitCode


class TecnorevError(Exception):
    """Base class: the message is meant for a person and is printed without a traceback."""

    exit_code = ExitCode.FAILED


class ConfigError(TecnorevError):
    """The configuration (environment, ``.env``) is missing or invalid.  ``problems`` maps
    each bad setting's name to what is wrong with it, where the error is about settings."""

    exit_code = ExitCode.UNAVAILABLE

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or {}


class DatabaseUnavailable(TecnorevError):
    """The configured database cannot be reached."""

    exit_code = ExitCode.UNAVAILABLE


class DiscoveryError(TecnorevError):
    """The installed modules do not form a consistent whole."""

    exit_code = ExitCode.BROKEN


class BadArgument(TecnorevError):
    """A command was given an argument it cannot use (a usage error)."""

    exit_code = ExitCode.USAGE


class UnknownModule(DiscoveryError):
    """A command was given a module name no installed module has (a usage error)."""

    exit_code = ExitCode.USAGE


class MigrationError(TecnorevError):
    """A migration command was refused or cannot run as asked."""


class DomainError(TecnorevError):
    """A request the domain refuses.  Carries the HTTP status and the stable ``code`` a client
    sees, so routes never build HTTP errors themselves; mapped to a response in one place
    (``tecnorev.core.web.errors``).

    ``keep_changes``: the refusal is itself a change that must be stored (a revoked token
    family, say), so the unit of work commits before the error is answered.
    """

    status_code = 400
    code = "bad_request"
    keep_changes = False

    def __init__(self, message: str, *, details: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str] | None:
        """Response headers the answer needs (``Retry-After``, say)."""
        return None


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    """The request contradicts what is stored (a duplicate, a state that moved on)."""

    status_code = 409
    code = "conflict"


class RuleViolation(DomainError):
    """The request is well formed but a business rule refuses it."""

    status_code = 422
    code = "rule_violation"


class NotAuthenticated(DomainError):
    status_code = 401
    code = "not_authenticated"


class PermissionDenied(DomainError):
    status_code = 403
    code = "permission_denied"


class _RetryLater(DomainError):
    def __init__(self, message: str, *, retry_after: float, details: object = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = max(1, math.ceil(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyRequests(_RetryLater):
    """This client or account asked too often; ``Retry-After`` says when it may again."""

    status_code = 429
    code = "too_many_requests"


class Overloaded(_RetryLater):
    """The process has no capacity left for this kind of work right now; not the client's
    fault, and worth retrying after ``Retry-After``."""

    status_code = 503
    code = "overloaded"


def first_line(exc: BaseException) -> str:
    """A one-line account of ``exc`` for a log line: the driver's own error when SQLAlchemy
    wraps one, its first line, or the exception's class when it says nothing."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
