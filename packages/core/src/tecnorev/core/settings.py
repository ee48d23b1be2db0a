"""Runtime settings read from the environment and an optional ``.env`` in the working directory."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

from dotenv import find_dotenv, load_dotenv

from tecnorev.core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///tecnorev.db"
_SCHEMES = ("sqlite", "postgresql")


def normalize_database_url(url: str) -> str:
    """Return ``url`` with the driver this project ships (psycopg2) made explicit.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or (not rest and scheme != "sqlite"):
        raise ConfigError(
            f"DATABASE_URL {url!r} is not a database URL; expected for example "
            "'postgresql+psycopg2://user@127.0.0.1:5432/tecnorev' or 'sqlite:///tecnorev.db'"
        )
    dialect, _, driver = scheme.partition("+")
    if dialect == "postgres":
        dialect = "postgresql"
    if dialect not in _SCHEMES:
        raise ConfigError(
            f"DATABASE_URL uses {dialect!r}; supported databases are PostgreSQL "
            "('postgresql+psycopg2://...') and SQLite ('sqlite:///file.db')"
        )
    if dialect == "postgresql" and driver not in ("", "psycopg2"):
        raise ConfigError(
            f"DATABASE_URL asks for the {driver!r} driver; this installation uses psycopg2: "
            "write 'postgresql+psycopg2://...'"
        )
    if dialect == "postgresql":
        driver = "psycopg2"
    return f"{dialect}{'+' + driver if driver else ''}://{rest}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    environment: str
    secret_key: str | None

    @property
    def is_production(self) -> bool:
        return self.environment == "production"


def check_dotenv(path: str) -> None:
    """Refuse a ``.env`` with a line python-dotenv cannot read: it would skip that line with a
    warning naming neither file nor line, and the default would be used silently."""
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as stream:
            bad = next((b.original for b in parse_stream(stream) if b.error), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    if bad is not None:
        raise ConfigError(
            f"{path}, line {bad.line}: cannot read {bad.string.strip()!r}; write NAME=value "
            "(quote a value holding spaces, # or quotes)"
        )


def load_settings() -> Settings:
    """Read settings now; ``.env`` is looked up from the working directory, not this file."""
    for name in ("DATABASE_URL", "SECRET_KEY", "TECNOREV_ENV"):
        if not os.environ.get(name, "x").strip():
            del os.environ[name]  # set but empty counts as unset, so .env can supply it
    dotenv = find_dotenv(usecwd=True)
    if dotenv:
        check_dotenv(dotenv)
    load_dotenv(dotenv, override=False)
    environment = os.environ.get("TECNOREV_ENV", "development").strip().lower()
    if environment not in ("development", "production", "test"):
        raise ConfigError(
            f"TECNOREV_ENV={environment!r} is not one of development, production, test"
        )
    url = os.environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    return Settings(
        database_url=normalize_database_url(url),
        environment=environment,
        secret_key=os.environ.get("SECRET_KEY") or None,
    )


def whole_number(name: str, default: int) -> int:
    """The environment variable ``name`` as a whole number of at least 1; ``default`` when it
    is unset or empty.  Anything else is a ``ConfigError`` that names the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r} must be a whole number of at least 1")
    return int(raw)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|min)?$")
_SECONDS_PER = {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0}


def duration(name: str, default: float) -> float:
    """The environment variable ``name`` as a duration above zero in seconds: ``2``, ``2s``,
    ``500ms`` or ``1min`` (a bare number is seconds); ``default`` when it is unset or empty.
    Anything else is a ``ConfigError`` naming the variable."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    match = _DURATION.match(raw.lower())
    value = float(match.group(1)) * _SECONDS_PER[match.group(2)] if match else 0.0
    if not 0 < value <= 86_400:
        raise ConfigError(f"{name}={raw!r} must be a duration above 0, such as 2s or 500ms")
    return value


CONNECT_TIMEOUT = 5


def connect_timeout() -> int:
    """Seconds every connection to the database may take to open:
    ``TECNOREV_DB_CONNECT_TIMEOUT``, else 5.  libpq waits forever for a server that accepts
    TCP and never answers (a black-holed host, a dead balancer) unless this is set; it takes
    whole seconds, and treats anything under 2 as 2."""
    return max(2, round(duration("TECNOREV_DB_CONNECT_TIMEOUT", CONNECT_TIMEOUT)))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


DEVELOPMENT_SECRET_KEY = "tecnorev-development-key-never-use-in-production"
_WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "dev", "development", "test"}
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def signing_key(settings: Settings | None = None) -> str:
    """The key tokens are signed with.

    In production it must be set and strong; elsewhere a fixed development key stands in, so
    tokens survive restarts and agree across workers.
    """
    settings = settings or get_settings()
    key = settings.secret_key
    if not settings.is_production:
        return key or DEVELOPMENT_SECRET_KEY
    if not key:
        raise ConfigError(
            f"SECRET_KEY is required when TECNOREV_ENV=production; generate one with: {_GENERATE}"
        )
    if (
        len(key) < 32
        or key == DEVELOPMENT_SECRET_KEY
        or key.lower() in _WEAK_SECRETS
        or len(set(key)) < 10
    ):
        raise ConfigError(
            "SECRET_KEY is too weak for production (at least 32 varied characters, not a "
            f"default); generate one with: {_GENERATE}"
        )
    return key
