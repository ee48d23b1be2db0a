"""Failed logins are counted per account and per client address; past either limit, a login
is refused with ``429 too_many_attempts`` before any password is hashed.

Counted with the ``limits`` library's moving window.  Its default storage is this process's
memory, so each worker counts on its own (the limits then hold per worker);
``TECNOREV_RATE_LIMIT_STORAGE`` (``redis://host:6379``, with the redis client installed)
shares the counts between workers and servers.  An unknown email is counted as a known one:
the answer never tells which emails have accounts.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from tecnorev.core.errors import ConfigError, TooManyRequests

PER_ACCOUNT = "10 per 15 minutes"
PER_ADDRESS = "100 per 15 minutes"
STORAGE = "memory://"


class TooManyAttempts(TooManyRequests):
    code = "too_many_attempts"


def _limit(name: str, default: str) -> RateLimitItem:
    raw = os.environ.get(name, "").strip() or default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a rate such as {default!r}") from exc


@dataclass(frozen=True)
class ThrottleConfig:
    per_account: RateLimitItem
    per_address: RateLimitItem
    storage: str

    @classmethod
    def from_env(cls) -> ThrottleConfig:
        return cls(
            per_account=_limit("TECNOREV_LOGIN_FAILURES_PER_ACCOUNT", PER_ACCOUNT),
            per_address=_limit("TECNOREV_LOGIN_FAILURES_PER_ADDRESS", PER_ADDRESS),
            storage=os.environ.get("TECNOREV_RATE_LIMIT_STORAGE", "").strip() or STORAGE,
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

    def _keys(self, email: str, address: str) -> list[tuple[RateLimitItem, str, str]]:
        return [
            (self.config.per_account, "login-account", email.strip().lower()),
            (self.config.per_address, "login-address", address),
        ]

    def check(self, *, email: str, address: str) -> None:
        """Refuse a login from ``address`` for ``email`` once either has failed too often."""
        for limit, kind, key in self._keys(email, address):
            if not self._window.test(limit, kind, key):
                reset = self._window.get_window_stats(limit, kind, key).reset_time
                raise TooManyAttempts(
                    "too many failed logins; wait before trying again",
                    retry_after=reset - time.time(),
                )

    def failed(self, *, email: str, address: str) -> None:
        for limit, kind, key in self._keys(email, address):
            self._window.hit(limit, kind, key)

    def succeeded(self, *, email: str) -> None:
        """A right password clears the account's failures (not the address's)."""
        limit, kind, key = self._keys(email, "")[0]
        self._window.clear(limit, kind, key)
