"""Backing the database up before migrating (``upgrade --backup``), and putting a backup back
(``tecnorev db restore``).

PostgreSQL: ``pg_dump -Fc`` to a timestamped file; restoring runs ``pg_restore --clean
--if-exists`` as a script through ``psql`` in ONE transaction, after dropping what the backup
does not contain (tables a newer revision created would otherwise survive, and block the
``--clean`` drops with their foreign keys): the database ends up exactly as backed up, or, if
anything fails, exactly as it was.
SQLite: ``sqlite3.Connection.backup`` both ways, never a file copy (a copy of a database in WAL
mode, or mid-write, is not a database).

Files are written under a temporary name and renamed when complete, so a file that looks like a
backup always is one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from tecnorev.migrate.connect import describe_url, unreachable
from tecnorev.migrate.errors import DatabaseUnavailable, MigrationError
from tecnorev.migrate.project import connect_timeout
from tecnorev.migrate.safety import LockTimeout

PG_DUMP_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"

# Every relation (then every standalone type) in the user's schemas that no extension owns:
# what "non-empty" means, and what a forced restore drops before loading the backup.
_USER_RELATIONS = """
    SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition
       AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                       AND d.objid = c.oid AND d.deptype = 'e')
"""
_USER_TYPES = """
    SELECT n.nspname AS schema, t.typname AS name
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE (t.typtype IN ('e', 'd', 'r')
            OR (t.typtype = 'c' AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid
                                            AND c.relkind = 'c')))
       AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                       AND d.objid = t.oid AND d.deptype = 'e')
"""
# Tables first: their CASCADE takes views, owned and identity sequences with them.
_DROP_USER_OBJECTS = f"""
DO $restore$
DECLARE target record;
BEGIN
  FOR target IN
    SELECT format('DROP %s IF EXISTS %I.%I CASCADE',
                  CASE kind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                            WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                            ELSE 'TABLE' END, schema, name) AS statement
      FROM ({_USER_RELATIONS}) AS relations ORDER BY kind NOT IN ('r', 'p')
  LOOP EXECUTE target.statement; END LOOP;
  FOR target IN
    SELECT format('DROP TYPE IF EXISTS %I.%I CASCADE', schema, name) AS statement
      FROM ({_USER_TYPES}) AS types
  LOOP EXECUTE target.statement; END LOOP;
END
$restore$;
"""


class BackupError(MigrationError):
    """A backup or restore could not be made; the message says why and what to do."""


# --------------------------------------------------------------------------- backing up


def backup_database(url: str | sa.URL, directory: Path) -> Path:
    """Back up the database at ``url`` into a new timestamped file in ``directory``."""
    url = sa.make_url(url)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if url.get_backend_name() == "postgresql":
        target = _new_file(directory, url.database or "postgres", ".dump")
        _write_atomically(target, lambda partial: _pg_dump(url, partial))
    elif url.get_backend_name() == "sqlite":
        source = _sqlite_path(url)
        target = _new_file(directory, source.stem, source.suffix or ".db")
        _write_atomically(target, lambda partial: _sqlite_copy(source, partial))
    else:
        raise BackupError(f"--backup does not know how to back up {url.get_backend_name()}")
    return target


def _new_file(directory: Path, stem: str, suffix: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = directory / f"{stem}-{stamp}{suffix}"
    counter = 2
    while target.exists():  # two backups within one second
        target = directory / f"{stem}-{stamp}-{counter}{suffix}"
        counter += 1
    return target


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a partial file readable by its owner only (a backup holds password
    hashes), created so before any byte lands in it."""
    partial = target.with_name(target.name + ".partial")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        write(partial)
        os.chmod(partial, 0o600)  # in case the writer replaced the file
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _client_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} was not found on PATH, so the database cannot be "
            f"{'backed up' if name == 'pg_dump' else 'restored'} and nothing was changed. "
            "Install the PostgreSQL client tools of the server's major version (Debian/Ubuntu: "
            "apt-get install postgresql-client) or put their bin folder first on PATH."
        )
    return found


def _libpq(url: sa.URL) -> tuple[str, dict[str, str]]:
    """A libpq connection URI for ``url``, and the environment carrying its password (never
    on the command line, where every user of the machine could read it) and the connect
    timeout every connection of ours has (a ``connect_timeout`` in the URI wins, as for
    engines)."""
    dsn = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = {**os.environ, "PGCONNECT_TIMEOUT": str(connect_timeout())}
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return dsn, env


# how libpq's client tools report a connection they could not open
_CONNECT_FAILED = re.compile(r"connection to server (?:at|on socket) .*? failed: (.+)")


def _unreachable(tool: str, url: sa.URL, errors: str, outcome: str) -> DatabaseUnavailable | None:
    """The error for ``tool`` having failed to connect (judged from its ``errors``), else None."""
    found = _CONNECT_FAILED.search(errors)
    return DatabaseUnavailable(f"{tool} {unreachable(url, found[1])} {outcome}") if found else None


def _pg_dump(url: sa.URL, target: Path) -> None:
    dsn, env = _libpq(url)
    result = subprocess.run(
        [_client_tool("pg_dump"), "--format=custom", "--no-password", f"--file={target}", dsn],
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        failed = _unreachable("pg_dump", url, result.stderr, "Nothing was migrated.")
        if failed:
            raise failed
        raise BackupError(
            f"pg_dump could not back up {describe_url(url)}, so nothing was migrated: "
            f"{result.stderr.strip()}"
        )


def _sqlite_path(url: sa.URL) -> Path:
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError(
            f"{describe_url(url)} is not a database file that can be backed up or restored"
        )
    return Path(url.database)


def _sqlite_copy(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"there is no database at {source} to back up")
    _copy_pages(source, target)


def _copy_pages(source: Path, target: Path) -> None:
    """Page-by-page copy through SQLite's backup API: consistent even while others write, and
    it replaces every page of the target under its write lock, so other connections see the
    old database or the new one, nothing in between."""
    reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
    finally:
        writer.close()
        reader.close()


# --------------------------------------------------------------------------- restoring


def kind_of_backup(file: Path) -> str:
    """``postgresql`` or ``sqlite``, from the file's first bytes."""
    try:
        with file.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"there is no backup file at {file}") from None
    if head.startswith(PG_DUMP_MAGIC):
        return "postgresql"
    if head == SQLITE_MAGIC:
        return "sqlite"
    raise BackupError(
        f"{file} is neither a PostgreSQL custom-format dump (pg_dump -Fc) nor a SQLite database"
    )


def existing_objects(connection: sa.Connection) -> list[str]:
    """What the database already holds (tables, views, sequences, types), by name."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(
            sa.text(
                "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                "ORDER BY type DESC, name"
            )
        )
        names = [row[0] for row in rows]
    else:
        rows = connection.execute(
            sa.text(
                f"SELECT schema, name FROM ({_USER_RELATIONS}) AS r "
                f"UNION ALL SELECT schema, name FROM ({_USER_TYPES}) AS t ORDER BY 1, 2"
            )
        )
        names = [name if schema == "public" else f"{schema}.{name}" for schema, name in rows]
    connection.rollback()
    return names


def restore_database(connection: sa.Connection, file: Path, *, force: bool) -> None:
    """Replace the database behind ``connection`` with the backup in ``file``.

    Refuses a database that holds anything unless ``force``.  The caller holds the migration
    lock, so no migrator runs meanwhile."""
    url = connection.engine.url
    kind = kind_of_backup(file)
    backend = connection.dialect.name
    if kind != backend:
        raise BackupError(
            f"{file} is a {_KIND_NAMES[kind]} backup but DATABASE_URL points to "
            f"{_KIND_NAMES.get(backend, backend)} ({describe_url(url)}): nothing was restored"
        )
    present = existing_objects(connection)
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise BackupError(
            f"refusing to restore into {describe_url(url)}: it is not empty ({len(present)} "
            f"objects: {shown}), and restoring replaces everything in it. Restore into an empty "
            "database, or run again with --force to replace its contents with the backup."
        )
    if kind == "postgresql":
        _pg_restore(url, file)
    else:
        _copy_pages(file, _sqlite_path(url))


_KIND_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


def _pg_restore(url: sa.URL, file: Path) -> None:
    """pg_restore's script, piped into psql inside one transaction that first drops whatever
    the database holds, so the result is the backup and only the backup.

    psql commits only after the last line it reads; if pg_restore fails half-way, psql is killed
    before it gets there and its transaction dies with it."""
    dsn, env = _libpq(url)
    timeout = LockTimeout.from_env()
    # A lock timeout, so a restore into a database still in use fails with a message instead of
    # waiting forever behind the application's sessions.
    prelude = (
        f"SET lock_timeout = '{timeout.milliseconds}ms';\n" if timeout.enabled else ""
    ) + _DROP_USER_OBJECTS
    restore_tool, psql_tool = _client_tool("pg_restore"), _client_tool("psql")
    _check_archive(restore_tool, file)
    with tempfile.TemporaryFile() as restore_errors, tempfile.TemporaryFile() as psql_errors:
        producer = subprocess.Popen(
            [restore_tool, "--clean", "--if-exists", "--file=-", str(file)],
            stdout=subprocess.PIPE,
            stderr=restore_errors,
        )
        consumer = subprocess.Popen(
            [psql_tool, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1",
             "--single-transaction", "-c", prelude, "-f", "-", dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=psql_errors,
            env=env,
        )  # fmt: skip
        assert producer.stdout is not None and consumer.stdin is not None
        try:
            shutil.copyfileobj(producer.stdout, consumer.stdin, 1 << 16)
            psql_stopped = False
        except BrokenPipeError:  # psql stopped on an error (it says which) or never connected
            psql_stopped = True
            producer.kill()  # else it blocks for good on a full pipe nobody reads
        if producer.wait() != 0 and not psql_stopped:
            consumer.kill()
            consumer.wait()
            raise BackupError(
                f"pg_restore could not read {file}, so nothing was restored: "
                f"{_read(restore_errors)}"
            )
        with contextlib.suppress(BrokenPipeError):
            consumer.stdin.close()
        if consumer.wait() != 0 or psql_stopped:
            detail = _read(psql_errors)
            failed = _unreachable(
                "psql", url, detail, "Nothing was restored: the database is as it was."
            )
            if failed:
                raise failed
            hint = (
                " Sessions are still using the database: stop the application, then restore."
                if "lock timeout" in detail
                else ""
            )
            raise BackupError(
                f"psql could not restore {file} into {describe_url(url)}; the database was left "
                f"as it was: {detail}.{hint}"
            )


def _check_archive(restore_tool: str, file: Path) -> None:
    """Read the archive's table of contents before anything is dropped: a damaged header can
    still stream out an empty, successful-looking script, which would leave an empty
    database."""
    listing = subprocess.run([restore_tool, "--list", str(file)], capture_output=True, text=True)
    entries = re.search(r"TOC Entries: (-?\d+)", listing.stdout)
    if listing.returncode != 0 or entries is None or int(entries[1]) <= 0:
        reason = listing.stderr.strip() or "its table of contents is empty or damaged"
        raise BackupError(f"pg_restore could not read {file}, so nothing was restored: {reason}")


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace").strip()
