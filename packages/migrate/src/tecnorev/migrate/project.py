"""What the engine needs to know about the project using it, and the settings it reads.

The defaults are Tecno Rev's, the engine's first user.  Another project names its own in a
``[tecnorev.migrate]`` section of its ``alembic.ini`` (the one in the working directory, or
``ALEMBIC_CONFIG``)::

    [tecnorev.migrate]
    entry_point_group = shop.modules
    settings_prefix = SHOP_
    command = shop db
    default_url = sqlite:///shop.db
    install_hint = pip install shop-{module}

Settings are read from the environment and from a ``.env`` file in the working directory;
the environment wins.  ``DATABASE_URL`` has no prefix; the engine's own settings (lock
timeout, connect timeout, ...) carry ``settings_prefix``.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values, find_dotenv

from tecnorev.migrate.errors import ConfigError

SECTION = "tecnorev.migrate"


@dataclass(frozen=True)
class Project:
    """``entry_point_group`` lists the modules; ``command`` is how messages name the CLI;
    ``install_hint`` says how to install a missing module."""

    entry_point_group: str = "tecnorev.modules"
    settings_prefix: str = "TECNOREV_"
    command: str = "tecnorev db"
    default_url: str | None = "sqlite:///tecnorev.db"
    # what to do about a missing module; {module} is its name
    install_hint: str = "pip install tecnorev-{module}"

    def setting_name(self, name: str) -> str:
        return f"{self.settings_prefix}{name}"


def _ini_path() -> Path | None:
    named = os.environ.get("ALEMBIC_CONFIG")
    path = Path(named) if named else Path("alembic.ini")
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def project() -> Project:
    """The project, from ``alembic.ini``'s ``[tecnorev.migrate]`` section over the defaults."""
    path = _ini_path()
    if path is None:
        return Project()
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#", ";"))
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    if not parser.has_section(SECTION):
        return Project()
    known = set(Project.__dataclass_fields__)
    given = dict(parser.items(SECTION))
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"{path} [{SECTION}]: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    values = {k: v.strip() for k, v in given.items() if k != "default_url"}
    if "default_url" not in given:
        return Project(**values)
    return Project(**values, default_url=given["default_url"].strip() or None)


@lru_cache(maxsize=1)
def _dotenv() -> dict[str, str | None]:
    """The working directory's ``.env`` (or a parent's); a line python-dotenv cannot read is
    refused with file and line, rather than skipped with an anonymous warning."""
    from dotenv.parser import parse_stream

    path = find_dotenv(usecwd=True)
    if not path:
        return {}
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
    return dict(dotenv_values(path))


def setting(name: str, *, prefixed: bool = True) -> str:
    """A setting's raw value, stripped: the environment, else ``.env``, else ``""``.  An empty
    value in the environment counts as unset, so ``.env`` can supply it."""
    key = project().setting_name(name) if prefixed else name
    value = os.environ.get(key, "").strip()
    if value:
        return value
    return (_dotenv().get(key) or "").strip()


def normalize_url(url: str, source: str = "DATABASE_URL") -> str:
    """``url`` with the PostgreSQL driver made explicit, or a ``ConfigError`` saying why the
    engine cannot use it.  It runs on PostgreSQL through psycopg2 (its lock, timeout and
    pooler checks speak to that driver) and on SQLite.  SQLAlchemy 2.1 maps a bare
    ``postgresql://`` to psycopg 3, and ``postgres://`` (Heroku's spelling) to nothing."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep or (not rest and scheme != "sqlite"):
        raise ConfigError(
            f"{source} {url!r} is not a database URL; expected for example "
            "'postgresql+psycopg2://user@127.0.0.1:5432/app' or 'sqlite:///app.db'"
        )
    dialect, _, driver = scheme.partition("+")
    if dialect == "postgres":
        dialect = "postgresql"
    if dialect not in ("postgresql", "sqlite"):
        raise ConfigError(
            f"{source} uses {dialect!r}; supported databases are PostgreSQL "
            "('postgresql+psycopg2://...') and SQLite ('sqlite:///file.db')"
        )
    if dialect == "postgresql" and driver not in ("", "psycopg2"):
        raise ConfigError(
            f"{source} asks for the {driver!r} driver; this installation uses psycopg2: "
            "write 'postgresql+psycopg2://...'"
        )
    if dialect == "postgresql":
        driver = "psycopg2"
    return f"{dialect}{'+' + driver if driver else ''}://{rest}"


def database_url() -> str:
    """The database migrations work on: the migration URL setting when set (a direct
    connection to the primary, while the application goes through a transaction pooler or
    reads from replicas), else ``DATABASE_URL`` (environment or ``.env``), else the project's
    default."""
    direct = setting("MIGRATION_URL")
    if direct:
        return normalize_url(direct, project().setting_name("MIGRATION_URL"))
    url = setting("DATABASE_URL", prefixed=False) or project().default_url
    if not url:
        raise ConfigError("DATABASE_URL is not set (environment or .env)")
    return normalize_url(url)


def migration_url_source() -> str:
    """The name of the setting :func:`database_url` reads, for messages."""
    return project().setting_name("MIGRATION_URL") if setting("MIGRATION_URL") else "DATABASE_URL"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|min)?$")
_SECONDS_PER = {"ms": 0.001, "s": 1.0, None: 1.0, "min": 60.0}


def duration(name: str, default: float) -> float:
    """The setting ``name`` as seconds above zero: ``2``, ``2s``, ``500ms`` or ``1min``."""
    raw = setting(name)
    if not raw:
        return default
    match = _DURATION.match(raw.lower())
    value = float(match.group(1)) * _SECONDS_PER[match.group(2)] if match else 0.0
    if not 0 < value <= 86_400:
        raise ConfigError(
            f"{project().setting_name(name)}={raw!r} must be a duration above 0, such as 2s"
        )
    return value


def connect_timeout() -> int:
    """Seconds a connection may take to open (``<prefix>DB_CONNECT_TIMEOUT``, default 5):
    libpq waits forever for a host that accepts TCP and never answers unless this is set; it
    takes whole seconds and treats anything under 2 as 2."""
    return max(2, round(duration("DB_CONNECT_TIMEOUT", 5)))


def debug() -> bool:
    """``<prefix>DEBUG``: show tracebacks instead of one-line errors."""
    return setting("DEBUG") not in ("", "0")


def reset() -> None:
    """Forget what was read (tests change the working directory and the environment)."""
    project.cache_clear()
    _dotenv.cache_clear()


def url_of(config: object) -> str:
    """The database an Alembic ``config`` works on: its ``sqlalchemy.url`` when a caller set
    one, else :func:`database_url`."""
    url = config.get_main_option("sqlalchemy.url")  # type: ignore[attr-defined]
    return normalize_url(url) if url else database_url()


@dataclass(frozen=True)
class SettingInfo:
    """A setting the engine reads, as a project lists its settings: the full name, its
    default, what it does, and what is wrong with its current value."""

    name: str
    default: str
    description: str
    secret: bool = False
    error: str | None = None


def settings_schema() -> list[SettingInfo]:
    """Every setting the engine reads, each checked as the engine would read it.  Tecno Rev
    lists these beside its own (``tecnorev settings``)."""
    from tecnorev.migrate.backfill import batch_size_setting, pause_setting
    from tecnorev.migrate.errors import MigrateError
    from tecnorev.migrate.safety import (
        DEFAULT_LOCK_RETRIES,
        DEFAULT_LOCK_TIMEOUT_MS,
        lock_retries,
        lock_timeout_ms,
    )

    def problem(read: object) -> str | None:
        try:
            read()  # type: ignore[operator]
        except MigrateError as exc:
            return str(exc)
        return None

    name = project().setting_name
    return [
        SettingInfo(
            "DATABASE_URL",
            project().default_url or "-",
            "where the data lives (postgresql://... or sqlite:///...)",
            error=problem(database_url),
        ),
        SettingInfo(
            name("MIGRATION_URL"),
            "-",
            "the database migrations run on, when not DATABASE_URL: a direct connection to the "
            "primary (the application may use a transaction pooler and read replicas)",
            error=problem(database_url),
        ),
        SettingInfo(
            name("LOCK_TIMEOUT"),
            f"{DEFAULT_LOCK_TIMEOUT_MS / 1000:g}s",
            "longest a migration's DDL waits for a table lock (PostgreSQL; 0 = no limit)",
            error=problem(lock_timeout_ms),
        ),
        SettingInfo(
            name("LOCK_RETRIES"),
            str(DEFAULT_LOCK_RETRIES),
            "retries of a revision that timed out waiting for a lock",
            error=problem(lock_retries),
        ),
        SettingInfo(
            name("BACKFILL_BATCH_SIZE"),
            "1000",
            "rows a backfill updates per batch (one short transaction each)",
            error=problem(batch_size_setting),
        ),
        SettingInfo(
            name("BACKFILL_PAUSE"),
            "0s",
            "pause between a backfill's batches (seconds unless a unit is given)",
            error=problem(pause_setting),
        ),
        SettingInfo(
            name("MIGRATION_LOCK"),
            "on",
            "off disables the lock between concurrent migrators",
        ),
        SettingInfo(
            name("DB_CONNECT_TIMEOUT"),
            "5s",
            "longest any connection to the database may take to open",
            error=problem(connect_timeout),
        ),
        SettingInfo(
            name("DEBUG"), "0", "1 shows a command's full traceback instead of its one-line error"
        ),
    ]
