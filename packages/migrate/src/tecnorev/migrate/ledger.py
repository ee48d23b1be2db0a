"""The migration ledger: one row per revision applied, reverted or stamped, kept forever.

It lives beside ``alembic_version`` in its own metadata (never part of any module's schema)
and is written inside the same transaction as the migration it records.  It also remembers
each revision's parents, which is what lets a package be set aside after it is uninstalled.
"""

from __future__ import annotations

import getpass
import hashlib
import socket
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.script import Script

from tecnorev.migrate.types import UTCDateTime, utcnow

ledger_metadata = sa.MetaData()

migration_log = sa.Table(
    "tecnorev_migration_log",
    ledger_metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("revision", sa.String(32), nullable=False, index=True),
    sa.Column("module", sa.String(64), nullable=True),
    sa.Column("distribution_version", sa.String(64), nullable=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("parents", sa.String(1024), nullable=False, server_default=""),
    sa.Column("checksum", sa.String(64), nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("os_user", sa.String(255), nullable=True),
    sa.Column("duration_ms", sa.Integer, nullable=True),
)

# Revisions of a module set aside with ``tecnorev db forget``: moved out of alembic_version,
# never deleted, and put back automatically once the module is installed again.
forgotten_revision = sa.Table(
    "tecnorev_forgotten_revision",
    ledger_metadata,
    sa.Column("revision", sa.String(32), primary_key=True),
    sa.Column("module", sa.String(64), nullable=False),
    sa.Column("parents", sa.String(1024), nullable=False, server_default=""),
    sa.Column("restamped", sa.String(1024), nullable=False, server_default=""),
    sa.Column("at", UTCDateTime, nullable=False),
)


def file_checksum(path: str | Path | None) -> str | None:
    if not path:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


@lru_cache(maxsize=64)
def distribution_version(distribution: str | None) -> str | None:
    if not distribution:
        return None
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def who() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return socket.gethostname(), user


def parents_of(script: Script) -> str:
    """A revision's parents in its own branch and the revisions it depends on, space separated."""
    return " ".join([*script._versioned_down_revisions, *script._resolved_dependencies])


def ensure_tables(connection: sa.Connection) -> None:
    ledger_metadata.create_all(connection, tables=[migration_log])


def record(
    connection: sa.Connection,
    *,
    revision: str,
    module: str | None,
    direction: str,
    distribution: str | None = None,
    parents: str = "",
    path: str | Path | None = None,
    duration_ms: int | None = None,
) -> None:
    """Write one ledger row (inside the caller's transaction)."""
    host, user = who()
    connection.execute(
        migration_log.insert().values(
            revision=revision,
            module=module,
            distribution_version=distribution_version(distribution),
            direction=direction,
            parents=parents,
            checksum=file_checksum(path),
            at=utcnow(),
            host=host[:255],
            os_user=user[:255],
            duration_ms=duration_ms,
        )
    )
