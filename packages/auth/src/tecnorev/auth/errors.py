"""The auth module's domain errors: each carries its HTTP status and a stable code."""

from __future__ import annotations

from tecnorev.core.errors import Conflict, NotAuthenticated, NotFound, RuleViolation


class InvalidCredentials(NotAuthenticated):
    """Wrong password, unknown email and deactivated user all look the same, so the answer
    never tells which emails have accounts."""

    code = "invalid_credentials"


class InvalidToken(NotAuthenticated):
    """A refresh token that is unknown, expired, or whose login has ended."""

    code = "invalid_token"


class TokenReused(NotAuthenticated):
    """A refresh token that was already rotated came back: someone holds a copy, so the
    whole login family is revoked.  The revocation is stored although the request fails."""

    code = "token_reused"
    keep_changes = True


class WrongPassword(RuleViolation):
    """The current password given to a password change does not match.  A 422, not a 401:
    the caller's token is fine, and a 401 would make clients drop or refresh it."""

    code = "wrong_password"


class WeakPassword(RuleViolation):
    code = "weak_password"


class InvalidEmail(RuleViolation):
    code = "invalid_email"


class EmailTaken(Conflict):
    code = "email_taken"


class UnknownUser(NotFound):
    code = "user_not_found"


class UnknownRole(RuleViolation):
    """Details: ``{"roles": [...]}``: the names that are no role."""

    code = "unknown_role"


class SelfLockout(Conflict):
    """The change would lock the caller out: deactivating themselves, or giving up their
    own ``users:manage``."""

    code = "self_lockout"
