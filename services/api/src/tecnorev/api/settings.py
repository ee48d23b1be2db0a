"""The API service's settings: where ``tecnorev serve`` listens, its workers, their pools and
waits (``TECNOREV_`` + name, from the environment or ``.env``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import NoDecode

from tecnorev.core.settings import Duration, SettingsGroup, Switch, WholeNumber, default_text

LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def _unguessable(token: SecretStr) -> SecretStr:
    if len(token.get_secret_value()) < 16:
        raise ValueError("must be at least 16 characters, so that it cannot be guessed")
    return token


def _origins(raw: object) -> object:
    """``https://shop.example, https://admin.example``: a list; empty: none."""
    if isinstance(raw, str):
        return [part.strip().rstrip("/") for part in raw.split(",") if part.strip()]
    return raw


def _origin(origin: str) -> str:
    if origin != "*" and not origin.startswith(("http://", "https://")):
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or *")
    return origin


# NoDecode: the environment's text is a comma-separated list, not JSON
Origins = Annotated[
    list[Annotated[str, AfterValidator(_origin)]], NoDecode, BeforeValidator(_origins)
]


class ApiSettings(SettingsGroup):
    owner: ClassVar[str] = "api"

    host: str = Field("127.0.0.1", description="address tecnorev serve listens on")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        8000, description="port tecnorev serve listens on"
    )
    workers: WholeNumber = Field(1, description="tecnorev serve worker processes")
    log_level: Annotated[LogLevel, BeforeValidator(lambda raw: str(raw).strip().lower())] = Field(
        "info", description="tecnorev serve's log level (debug, info, warning, error)"
    )
    db_pool_size: WholeNumber | None = Field(
        None,
        description="database connections each worker keeps open, per pool (one for writes, "
        "one for public reads)",
        json_schema_extra=default_text("from the server's max_connections"),
    )
    db_connection_reserve: WholeNumber = Field(
        10,
        description="connections of the server left to others (migrations, consoles, "
        "monitoring) when pools are sized",
    )
    db_pool_timeout: Duration = Field(
        3.0, description="longest a request waits for a free connection, then 503 overloaded"
    )
    ready_timeout: Duration = Field(
        3.0, description="longest /ready waits for the database before answering 503"
    )
    replica_report_interval: Duration = Field(
        10.0,
        description="how often each worker reports the release it runs, which tecnorev db "
        "contract waits on (PostgreSQL; a report expires after three intervals; 0 = never)",
    )
    metrics_token: Annotated[SecretStr, AfterValidator(_unguessable)] | None = Field(
        None, description="a bearer token /metrics requires (unset: /metrics is open)"
    )
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = Field(
        None,
        description="serve /metrics on this port of its own (same address) instead of the "
        "API's port",
    )
    tracing: Switch = Field(
        False,
        description="1 sends OpenTelemetry traces (requests and their SQL) where the OTEL_* "
        "settings say; needs tecnorev-api[tracing]",
    )
    log_config: str | None = Field(
        None,
        description="a logging configuration file (.json, .yaml or .ini, as uvicorn reads "
        "them) used instead of the built-in one",
    )
    cors_origins: Origins = Field(
        default_factory=list,
        description="origins whose browser pages may call the API (comma-separated, e.g. "
        "https://shop.example; * for any, without credentials); unset: none",
    )
    gzip_min_size: int = Field(
        1000,
        ge=0,
        description="responses of at least this many bytes are gzip-compressed for clients "
        "that accept it; 0 turns compression off",
    )
    shutdown_grace: Duration = Field(
        10.0,
        description="how long a stopping worker lets running requests finish before "
        "cancelling them",
    )
