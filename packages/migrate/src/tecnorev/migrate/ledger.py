"""The migration ledger: one row per revision applied, reverted or stamped, kept forever.

It lives beside ``alembic_version`` in its own metadata (never part of any module's schema)
and is written inside the same transaction as the migration it records.  It also remembers
each revision's parents, which is what lets a package be set aside after it is uninstalled.
A failed attempt is written after its rollback, in a transaction of its own (``failed``, with
the error as its note); an intentional edit of an applied file is re-recorded by ``repair``
(with the reason as its note).

Checksums are taken over the file's text with line endings and trailing whitespace
normalised, so a CRLF checkout or an editor trimming spaces is not an edit; rows written
before that hold the sha256 of the raw bytes, and either is accepted.
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
    # why: the error of a failed attempt, the reason given for a repair
    sa.Column("note", sa.String(1000), nullable=True),
)
NOTE_LENGTH = 1000

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


# The file of each revision as last applied: what an older release of its module runs to go
# back (see tecnorev.migrate.stored).
revision_source = sa.Table(
    "tecnorev_revision_source",
    ledger_metadata,
    sa.Column("revision", sa.String(32), primary_key=True),
    sa.Column("module", sa.String(64), nullable=True),
    sa.Column("checksum", sa.String(64), nullable=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("stored_at", UTCDateTime, nullable=False),
)


def normalized_text(data: bytes) -> bytes:
    """The text a checksum covers: no BOM, LF line endings, no trailing whitespace on a line,
    one final newline.  A file already written that way is its own normal form."""
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")


def checksums(path: str | Path | None) -> tuple[str, str] | None:
    """(normalised, raw) sha256 of the file at ``path``; None when it cannot be read."""
    if not path:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    raw = hashlib.sha256(data).hexdigest()
    return hashlib.sha256(normalized_text(data)).hexdigest(), raw


def sha256_text(source: str) -> str:
    """The ledger's checksum of a revision's text (normalised as for a file)."""
    data = source.encode("utf-8", errors="surrogateescape")
    return hashlib.sha256(normalized_text(data)).hexdigest()


def file_checksum(path: str | Path | None) -> str | None:
    """The checksum the ledger records for a revision file (over its normalised text)."""
    both = checksums(path)
    return both[0] if both else None


def matches(recorded: str, path: str | Path | None) -> bool:
    """Whether the file at ``path`` is the one ``recorded`` was taken of (normalised, or raw
    for rows written before normalisation)."""
    both = checksums(path)
    return both is not None and recorded in both


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
    """Create the ledger, or bring an older one up to date (its ``note`` column)."""
    ledger_metadata.create_all(connection, tables=[migration_log])
    if not has_notes(connection):
        connection.execute(
            sa.text(f"ALTER TABLE {migration_log.name} ADD COLUMN note VARCHAR({NOTE_LENGTH})")
        )


def has_notes(connection: sa.Connection) -> bool:
    """Whether the ledger has its ``note`` column (ledgers older than it do not)."""
    columns = sa.inspect(connection).get_columns(migration_log.name)
    return any(column["name"] == "note" for column in columns)


def record(
    connection: sa.Connection,
    *,
    revision: str,
    module: str | None,
    direction: str,
    distribution: str | None = None,
    parents: str = "",
    path: str | Path | None = None,
    checksum: str | None = None,
    duration_ms: int | None = None,
    note: str | None = None,
) -> None:
    """Write one ledger row (inside the caller's transaction); the checksum is ``path``'s
    unless given."""
    host, user = who()
    connection.execute(
        migration_log.insert().values(
            revision=revision,
            module=module,
            distribution_version=distribution_version(distribution),
            direction=direction,
            parents=parents,
            checksum=checksum or file_checksum(path),
            at=utcnow(),
            host=host[:255],
            os_user=user[:255],
            duration_ms=duration_ms,
            note=note[:NOTE_LENGTH] if note else None,
        )
    )
