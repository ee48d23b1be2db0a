"""auth's settings (``TECNOREV_`` + name, from the environment or ``.env``) and the token
configuration built from them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, ClassVar

from limits import RateLimitItem, parse
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from tecnorev.core.settings import (
    Duration,
    SettingsGroup,
    WholeNumber,
    default_text,
    get_settings,
    parse_duration,
    signing_key,
)


def _rate(raw: str) -> str:
    try:
        parse(raw)
    except ValueError:
        raise ValueError("is not a rate such as '10 per 15 minutes'") from None
    return raw.strip()


Rate = Annotated[str, AfterValidator(_rate)]


def _duration_or_off(raw: object) -> float:
    if str(raw).strip().lower() in {"0", "0s", "off"}:
        return 0.0
    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError("must be a duration such as 5s or 500ms, or 0 (off)") from None


DurationOrOff = Annotated[float, BeforeValidator(_duration_or_off)]


class AuthSettings(SettingsGroup):
    owner: ClassVar[str] = "auth"

    access_token_minutes: WholeNumber = Field(15, description="lifetime of an access token")
    refresh_token_days: WholeNumber = Field(
        14, description="lifetime of a refresh token (each use renews it)"
    )
    password_hashes: WholeNumber | None = Field(
        None,
        description="passwords a worker hashes at once (argon2: ~64 MiB each)",
        json_schema_extra=default_text("its cores"),
    )
    password_hash_wait: Duration = Field(
        2.0, description="how long a login waits for a hashing turn before 503 overloaded"
    )
    login_failures_per_account: Rate = Field(
        "10 per 15 minutes",
        description="failed logins an account may have before logins to it are refused (429)",
    )
    login_failures_per_address: Rate = Field(
        "100 per 15 minutes",
        description="the same, per client address, across accounts",
    )
    rate_limit_storage: str = Field(
        "memory://",
        description="where failed logins are counted: each worker's memory, or redis://... "
        "to share the counts",
    )
    caller_cache_seconds: DurationOrOff = Field(
        5.0,
        description="how long a worker may reuse a caller it looked up (user, roles, login) "
        "on PostgreSQL, where every change to them is notified at once and forgotten; "
        "0 reads the caller on every request",
        json_schema_extra=default_text("5s"),
    )
    admin_password: SecretStr | None = Field(
        None,
        description="password tecnorev users create-admin sets (else it generates one)",
        json_schema_extra=default_text("generated"),
    )

    @property
    def hash_slots(self) -> int:
        return self.password_hashes or len(os.sched_getaffinity(0))

    def limit(self, field: str) -> RateLimitItem:
        return parse(getattr(self, field))


@dataclass(frozen=True)
class AuthConfig:
    secret_key: str
    access_ttl: timedelta
    refresh_ttl: timedelta
    algorithm: str = "HS256"


@lru_cache(maxsize=1)
def get_auth_config() -> AuthConfig:
    settings = AuthSettings()
    return AuthConfig(
        secret_key=signing_key(get_settings()),
        access_ttl=timedelta(minutes=settings.access_token_minutes),
        refresh_ttl=timedelta(days=settings.refresh_token_days),
    )
