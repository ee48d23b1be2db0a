"""The settings schema: every setting the product reads, typed, described and validated.

Settings come from the environment, else a ``.env`` found from the working directory (the
environment wins; an empty value counts as unset), else their defaults.  Each owner declares
a class: :class:`CoreSettings` here, a module's on its descriptor (``Module.settings``),
other distributions' under the ``tecnorev.settings`` entry point (see
:mod:`tecnorev.core.settings_schema`, which lists and validates them all).  pydantic-settings
does the typing and reading; a bad value is a :class:`ConfigError` naming the variable, never
a validation traceback.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from dotenv import dotenv_values, find_dotenv
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tecnorev.core.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///tecnorev.db"
PREFIX = "TECNOREV_"
_SCHEMES = ("sqlite", "postgresql")


def normalize_database_url(url: str, name: str = "DATABASE_URL") -> str:
    """Return ``url`` with the driver this project ships (psycopg2) made explicit.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3, which is not installed.
    """
    try:
        return _normalized(url)
    except ValueError as exc:
        raise ConfigError(f"{name}={url.strip()!r} {exc}") from None


def _normalized(url: str) -> str:
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or (not rest and scheme != "sqlite"):
        raise ValueError(
            "is not a database URL; expected for example "
            "'postgresql+psycopg2://user@127.0.0.1:5432/tecnorev' or 'sqlite:///tecnorev.db'"
        )
    dialect, _, driver = scheme.partition("+")
    if dialect == "postgres":
        dialect = "postgresql"
    if dialect not in _SCHEMES:
        raise ValueError(
            f"names {dialect!r}; supported databases are PostgreSQL "
            "('postgresql+psycopg2://...') and SQLite ('sqlite:///file.db')"
        )
    if dialect == "postgresql" and driver not in ("", "psycopg2"):
        raise ValueError(
            f"asks for the {driver!r} driver; this installation uses psycopg2: "
            "write 'postgresql+psycopg2://...'"
        )
    if dialect == "postgresql":
        driver = "psycopg2"
    return f"{dialect}{'+' + driver if driver else ''}://{rest}"


# ------------------------------------------------------------------------------ .env


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


# name -> (the .env file that supplied it, the value it supplied)
_from_dotenv: dict[str, tuple[str, str]] = {}


def load_env() -> None:
    """Merge the ``.env`` found from the working directory into the environment, under what
    the environment already holds.  Read afresh on each call: tests and tools change the
    working directory, and it costs one small file at start-up."""
    path = find_dotenv(usecwd=True)
    if not path:
        return
    check_dotenv(path)
    for name, value in dotenv_values(path).items():
        if value is not None and not os.environ.get(name, "").strip():
            os.environ[name] = value
            _from_dotenv[name] = (path, value)


def raw_value(name: str) -> str:
    """What the environment (with ``.env`` merged) holds for ``name``, stripped; ``""`` when
    unset.  For listings and messages: the product reads settings through their classes."""
    return os.environ.get(name, "").strip()


def source_of(name: str) -> str:
    """Where the value of ``name`` comes from: ``environment``, ``.env (path)`` or
    ``default``."""
    value = os.environ.get(name, "")
    if not value.strip():
        return "default"
    path, supplied = _from_dotenv.get(name, ("", None))
    return f".env ({path})" if supplied == value else "environment"


# ----------------------------------------------------------------------------- types

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|min)?$")
_SECONDS_PER = {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0}


def parse_duration(raw: Any) -> float:
    """``2``, ``2s``, ``500ms`` or ``1min`` (a bare number is seconds) as seconds above 0."""
    match = _DURATION.match(str(raw).strip().lower())
    value = float(match.group(1)) * _SECONDS_PER[match.group(2)] if match else 0.0
    if not 0 < value <= 86_400:
        raise ValueError("must be a duration above 0, such as 2s or 500ms")
    return value


def parse_whole_number(raw: Any) -> int:
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError("must be a whole number of at least 1")
    return int(text)


def _environment(raw: Any) -> str:
    name = str(raw).strip().lower()
    if name not in ENVIRONMENTS:
        raise ValueError(f"is not one of {', '.join(ENVIRONMENTS)}")
    return name


ENVIRONMENTS = ("development", "production", "test")
Duration = Annotated[float, BeforeValidator(parse_duration)]
WholeNumber = Annotated[int, BeforeValidator(parse_whole_number)]
DatabaseUrl = Annotated[str, AfterValidator(_normalized)]


def _url_list(raw: Any) -> Any:
    """``postgresql://a/db, postgresql://b/db``: a list; empty: none."""
    if isinstance(raw, str):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _replica_url(url: str) -> str:
    if not url.startswith(("postgresql", "postgres:")):
        raise ValueError(f"{url.split('@')[-1]!r}: a read replica is a PostgreSQL server")
    return url


# NoDecode: the environment's text is a comma-separated list, not JSON
ReplicaUrls = Annotated[
    list[Annotated[str, AfterValidator(_normalized), AfterValidator(_replica_url)]],
    NoDecode,
    BeforeValidator(_url_list),
]
_ON = ("1", "true", "yes", "on")
_OFF = ("", "0", "false", "no", "off")


def parse_switch(raw: object) -> bool:
    """``1``/``0`` (or true/false, yes/no, on/off); a default given as a bool stays itself."""
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _ON or text in _OFF:
        return text in _ON
    raise ValueError("must be 1 or 0 (or true/false, yes/no, on/off)")


Switch = Annotated[bool, BeforeValidator(parse_switch)]


def _currency(raw: object) -> str:
    code = str(raw).strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise ValueError(f"{raw!r} is not an ISO 4217 currency code (three letters, e.g. USD)")
    return code


Currency = Annotated[str, BeforeValidator(_currency)]


def default_text(text: str) -> JsonDict:
    """``json_schema_extra`` for a field whose default is worked out at run time."""
    return {"default_text": text}


class SettingsGroup(BaseSettings):
    """Base of every settings class: ``TECNOREV_`` + the field's name unless the field names
    its variable (``validation_alias``); empty values count as unset; other variables are
    ignored.  Reading one loads ``.env`` first."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )
    # shown by ``tecnorev settings``: who owns these settings
    owner: ClassVar[str] = ""

    def __init__(self, **values: Any) -> None:
        load_env()
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = problems_of(type(self), exc)
            raise ConfigError("; ".join(problems.values()), problems) from None

    @classmethod
    def variable(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        prefix = cls.model_config.get("env_prefix") or ""
        return alias if isinstance(alias, str) else prefix + field.upper()


def problems_of(group: type[SettingsGroup], error: ValidationError) -> dict[str, str]:
    """Each bad setting's name -> ``NAME='value' what is wrong``."""
    problems: dict[str, str] = {}
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = group.variable(field) if field in group.model_fields else field
        cause = problem.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, ValueError) else problem["msg"].lower()
        raw = raw_value(name)
        problems[name] = f"{name}={raw!r} {message}" if raw else f"{name}: {message}"
    return problems


# ------------------------------------------------------------------------------ core


class CoreSettings(SettingsGroup):
    """Settings of the platform itself: the database, the environment, the signing key and
    the bounds every request of every module lives within."""

    owner: ClassVar[str] = "core"

    database_url: DatabaseUrl = Field(
        DEFAULT_DATABASE_URL,
        validation_alias="DATABASE_URL",
        description="where the data lives (postgresql://... or sqlite:///...)",
    )
    environment: Annotated[str, BeforeValidator(_environment)] = Field(
        "development",
        validation_alias="TECNOREV_ENV",
        description="development, test or production",
    )
    secret_key: SecretStr | None = Field(
        None,
        validation_alias="SECRET_KEY",
        description="signs access tokens; required in production, where a short or default "
        "key is refused",
        json_schema_extra=default_text("a development key"),
    )
    db_connect_timeout: Duration = Field(
        5.0,
        description="longest any connection to the database may take to open; whole seconds, "
        "at least 2; a connect_timeout in DATABASE_URL wins",
    )
    request_lock_timeout: Duration = Field(
        3.0, description="longest a request waits for a row another request holds"
    )
    request_statement_timeout: Duration = Field(
        15.0, description="longest one statement of a request may run"
    )
    idle_in_transaction_timeout: Duration = Field(
        60.0, description="the server ends a request's transaction left idle this long"
    )
    read_threads: WholeNumber = Field(
        2, description="threads per worker for hot reads: listing pages, public reads"
    )
    loop_reads: WholeNumber = Field(
        8,
        description="reads a worker runs at once on its event loop (PostgreSQL): listing "
        "pages, callers",
    )
    max_in_flight: WholeNumber | None = Field(
        None,
        description="requests a worker runs at once",
        json_schema_extra=default_text("its writing pool's width"),
    )
    admission_backlog: WholeNumber | None = Field(
        None,
        description="requests that may wait for a place before 503 overloaded",
        json_schema_extra=default_text("TECNOREV_MAX_IN_FLIGHT"),
    )
    admission_wait: Duration = Field(
        1.0, description="how long a request may wait for a place before 503 overloaded"
    )
    request_body_timeout: Duration = Field(
        10.0, description="longest a request body may take to arrive, then 408"
    )
    debug: Switch = Field(
        False, description="1 shows a command's full traceback instead of its one-line error"
    )
    log_format: Annotated[
        Literal["auto", "text", "json"], BeforeValidator(lambda raw: str(raw).strip().lower())
    ] = Field("auto", description="log lines as text or json (auto: json in production)")
    metrics: Switch = Field(True, description="0 turns the per-request metrics and /metrics off")
    build_id: str | None = Field(
        None, description="the build this deployment runs (a commit, an image tag), in /health"
    )
    db_pooler: Annotated[
        Literal["none", "transaction"], BeforeValidator(lambda raw: str(raw).strip().lower())
    ] = Field(
        "none",
        description="transaction: the API's connections go through a pooler in transaction "
        "mode (PgBouncer): no session state is set on them and no statement is prepared, the "
        "request bounds come from the database role (ALTER ROLE ... SET lock_timeout ...)",
    )
    read_replica_urls: ReplicaUrls = Field(
        default_factory=list,
        description="streaming replicas of DATABASE_URL's server (comma-separated URLs) that "
        "serve public reads, each client's own writes always included; unset: none",
    )
    replica_max_lag: Duration = Field(
        10.0,
        description="a read replica further behind than this serves no reads until it catches up",
    )
    replica_check_interval: Duration = Field(
        0.5, description="how often each worker asks the read replicas how far they have replayed"
    )
    currency: Currency = Field(
        "USD",
        description="ISO 4217 code of every price and order amount (one per store): shown "
        "beside them, and the currency payments must be in",
    )

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def connect_timeout(self) -> int:
        """libpq waits forever for a server that accepts TCP and never answers unless this is
        set; it takes whole seconds, and treats anything under 2 as 2."""
        return max(2, round(self.db_connect_timeout))


class TestingSettings(SettingsGroup):
    """Settings of the test harness (``tecnorev.testing.core``)."""

    owner: ClassVar[str] = "core (tests)"

    test_database_url: DatabaseUrl = Field(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres",
        validation_alias="TEST_DATABASE_URL",
        description="the PostgreSQL server tests make their throwaway databases on",
    )
    require_postgres: Switch = Field(
        False, description="1 makes an unreachable test server a failure instead of a skip"
    )


# The platform's settings read through the ``Settings`` name by older code.
Settings = CoreSettings


def load_settings() -> CoreSettings:
    """Read core's settings now."""
    return CoreSettings()


@lru_cache(maxsize=1)
def get_settings() -> CoreSettings:
    return load_settings()


def store_currency() -> str:
    """The currency of every price and order amount (``TECNOREV_CURRENCY``)."""
    return get_settings().currency


def connect_timeout() -> int:
    """Seconds every connection to the database may take to open (see ``CoreSettings``)."""
    return CoreSettings().connect_timeout()


DEVELOPMENT_SECRET_KEY = "tecnorev-development-key-never-use-in-production"
_WEAK_SECRETS = {"secret", "changeme", "change-me", "password", "dev", "development", "test"}
_GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(48))'"


def signing_key(settings: CoreSettings | None = None) -> str:
    """The key tokens are signed with.

    In production it must be set and strong; elsewhere a fixed development key stands in, so
    tokens survive restarts and agree across workers.
    """
    settings = settings or get_settings()
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
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
