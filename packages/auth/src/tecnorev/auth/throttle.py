"""Failed logins are counted per account and per client address; past either limit, a login
is refused with ``429 too_many_attempts`` before any password is hashed.

Counted with the ``limits`` library's moving window.  Its default storage is this process's
memory, so each worker counts on its own (the limits then hold per worker);
``TECNOREV_RATE_LIMIT_STORAGE`` (``redis://host:6379``, with the redis client installed)
shares the counts between workers and servers.  An unknown email is counted as a known one:
the answer never tells which emails have accounts.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tecnorev.auth.config import AuthSettings
from tecnorev.core.errors import ConfigError, TooManyRequests


class TooManyAttempts(TooManyRequests):
    code = "too_many_attempts"


@dataclass(frozen=True)
class ThrottleConfig:
    per_account: RateLimitItem
    per_address: RateLimitItem
    storage: str

    @classmethod
    def from_env(cls) -> ThrottleConfig:
        settings = AuthSettings()
        return cls(
            per_account=settings.limit("login_failures_per_account"),
            per_address=settings.limit("login_failures_per_address"),
            storage=settings.rate_limit_storage,
        )


class LoginThrottle:
    def __init__(self, config: ThrottleConfig | None = None) -> None:
        self.config = config or ThrottleConfig.from_env()
        try:
            storage = storage_from_string(self.config.storage)
        except ConfigurationError as exc:
            raise ConfigError(
                f"TECNOREV_RATE_LIMIT_STORAGE={self.config.storage!r} cannot be used: {exc}"
            ) from exc
        self._window = MovingWindowRateLimiter(storage)

    def _account(self, email: str) -> tuple[RateLimitItem, str, str]:
        # a digest: the key stays small whatever was typed, and no email sits in the store
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.config.per_account, "login-account", digest

    def _address(self, address: str) -> tuple[RateLimitItem, str, str]:
        return self.config.per_address, "login-address", address

    def attempt(self, *, email: str, address: str) -> None:
        """Refuse a login once the account or the address failed too often; otherwise count
        the attempt against the account now, so guesses sent in parallel cannot all pass
        the check before the first one fails."""
        limit, kind, key = self._address(address)
        if not self._window.test(limit, kind, key):
            self._refuse(limit, kind, key)
        limit, kind, key = self._account(email)
        if not self._window.hit(limit, kind, key):
            self._refuse(limit, kind, key)

    def _refuse(self, limit: RateLimitItem, kind: str, key: str) -> None:
        reset = self._window.get_window_stats(limit, kind, key).reset_time
        raise TooManyAttempts(
            "too many failed logins; wait before trying again", retry_after=reset - time.time()
        )

    def failed(self, *, address: str) -> None:
        """The attempt failed: it counts against the address too (successes do not, so many
        people behind one address can still log in)."""
        self._window.hit(*self._address(address))

    def succeeded(self, *, email: str) -> None:
        """A right password clears the account's failures (not the address's)."""
        with contextlib.suppress(KeyError):  # cleared meanwhile by another success
            self._window.clear(*self._account(email))


_lock = threading.Lock()


def throttle_of(state: Any) -> LoginThrottle:
    """The throttle kept on an app's ``state``, made at its first login."""
    throttle = getattr(state, "login_throttle", None)
    if throttle is None:
        with _lock:
            throttle = getattr(state, "login_throttle", None)
            if throttle is None:
                throttle = state.login_throttle = LoginThrottle()
    return throttle
