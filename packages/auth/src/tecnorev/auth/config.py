"""Token lifetimes, from the environment or ``.env`` (read through core's settings)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

from tecnorev.core.errors import ConfigError
from tecnorev.core.settings import get_settings, signing_key


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) == 0:
        raise ConfigError(f"{name}={raw!r} must be a positive whole number")
    return int(raw)


@dataclass(frozen=True)
class AuthConfig:
    secret_key: str
    access_ttl: timedelta
    refresh_ttl: timedelta
    algorithm: str = "HS256"


@lru_cache(maxsize=1)
def get_auth_config() -> AuthConfig:
    settings = get_settings()  # loads .env first
    return AuthConfig(
        secret_key=signing_key(settings),
        access_ttl=timedelta(minutes=_positive("TECNOREV_ACCESS_TOKEN_MINUTES", 15)),
        refresh_ttl=timedelta(days=_positive("TECNOREV_REFRESH_TOKEN_DAYS", 14)),
    )
