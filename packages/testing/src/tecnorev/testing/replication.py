"""Throwaway read replicas and connection poolers in front of the test server, for tests of
read replicas and of PgBouncer in transaction mode.

:func:`streaming_replica` takes a base backup of the server named by ``TEST_DATABASE_URL``
(the primary) and runs it as a hot standby on a spare port; :func:`pgbouncer` runs a pooler in
front of a server.  Both are context managers for fixtures: everything they start is stopped
and removed on exit, and every wait is bounded.

PostgreSQL and pgbouncer refuse to run as root: as root (CI) they run as the ``postgres`` OS
user, in a folder under /tmp that this user owns.  When this machine cannot provide one (a
program or that user missing, or a primary that refuses replication connections) they raise
:class:`HarnessUnavailable` naming what to install or change; :func:`or_skip` turns that into
a skip.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import psycopg2.extras
import pytest
import sqlalchemy as sa

from tecnorev.core.db import bounded_engine
from tecnorev.core.settings import connect_timeout
from tecnorev.testing.core import admin_url

T = TypeVar("T")

# Short (a unix socket's path must fit in ~107 bytes) and open to the postgres OS user.
SCRATCH_ROOT = Path("/tmp")
REPLICA_PREFIX = "tecnorev-replica-"
PGBOUNCER_PREFIX = "tecnorev-pgbouncer-"
# A replica's slot is named after its folder: a slot whose folder is gone was abandoned.
SLOT_PREFIX = "tecnorev_replica_"
SERVER_USER = "postgres"
PGBOUNCER_BINARIES = ("pgbouncer", "/usr/sbin/pgbouncer")
# What a hot standby must allow at least as much of as its primary, or it will not start.
STANDBY_LIMITS = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)
STATEMENT_TIMEOUT_MS = 30_000  # the harness's own queries on either server


class HarnessError(RuntimeError):
    """A server of the harness did not start or stop, or a bounded wait ran out."""


class HarnessUnavailable(HarnessError):
    """This machine cannot provide the server: a program, an OS user or a setting of the
    primary is missing.  The message names what to install or change."""


@contextmanager
def or_skip(manager: AbstractContextManager[T]) -> Iterator[T]:
    """``manager`` entered, or the test skipped when this machine cannot provide it."""
    with ExitStack() as stack:
        try:
            value = stack.enter_context(manager)
        except HarnessUnavailable as error:
            pytest.skip(str(error))
        yield value


# --------------------------------------------------------------------------- WAL positions


class Lsn(int):
    """A WAL position: an int (compare them, subtract them into bytes) shown the way
    PostgreSQL writes it (``0/3000148``)."""

    @classmethod
    def parse(cls, text: str) -> Lsn:
        high, low = text.split("/")
        return cls((int(high, 16) << 32) | int(low, 16))

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"Lsn('{self}')"


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _Runner:
    """Runs the server programs: as ourselves, or as the postgres OS user when we are root
    (initdb, pg_ctl, postgres and pgbouncer all refuse root)."""

    account: pwd.struct_passwd | None

    @classmethod
    def for_servers(cls) -> _Runner:
        if os.geteuid() != 0:
            return cls(None)
        try:
            return cls(pwd.getpwnam(SERVER_USER))
        except KeyError:
            raise HarnessUnavailable(
                f"running as root, and there is no {SERVER_USER!r} OS user to run PostgreSQL "
                "and pgbouncer as (they refuse root): install PostgreSQL from the distribution's "
                f"packages, which create it, or `useradd --system {SERVER_USER}`"
            ) from None

    def own(self, folder: Path) -> None:
        """Give ``folder`` and what is in it to the user running the servers, to it alone
        (PostgreSQL refuses a data directory others may read)."""
        folder.chmod(0o700)
        if self.account is None:
            return
        uid, gid = self.account.pw_uid, self.account.pw_gid
        os.chown(folder, uid, gid)
        for root, dirs, files in os.walk(folder):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    def environment(self, **extra: str) -> dict[str, str]:
        # libpq and pg_ctl read PG* variables (PGDATA, PGHOST, PGOPTIONS...): only ours count
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        if self.account is not None:
            name = self.account.pw_name
            env.update(HOME=self.account.pw_dir, USER=name, LOGNAME=name)
        env.update(extra)
        return env

    def identity(self) -> dict[str, Any]:
        """subprocess's arguments that switch to the user (none when we are it already)."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def run(
        self, command: Sequence[str], *, timeout: float, cwd: Path, **env: str
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(command),
                cwd=cwd,
                env=self.environment(**env),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **self.identity(),
            )
        except subprocess.TimeoutExpired as error:
            raise HarnessError(f"{shlex.join(command)} took over {timeout:g} s") from error


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (another process may take it before us: callers retry)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), 0.5).close()
    except OSError:
        return False
    return True


def wait_for(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; HarnessError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _engine(url: str | sa.URL) -> sa.Engine:
    """One connection per use, opening within the connect timeout, each statement bounded."""
    return bounded_engine(
        url,
        isolation_level="AUTOCOMMIT",
        poolclass=sa.pool.NullPool,
        connect_args={"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
    )


def _rows(url: str | sa.URL, sql: str, **params: Any) -> list[sa.Row[Any]]:
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params))
    finally:
        engine.dispose()


def _scalar(url: str | sa.URL, sql: str, **params: Any) -> Any:
    rows = _rows(url, sql, **params)
    return rows[0][0] if rows else None


# --------------------------------------------------------------------------- the primary


@dataclass(frozen=True)
class _Primary:
    url: sa.URL
    host: str
    port: int
    user: str
    major: int
    limits: dict[str, str]

    @property
    def local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    def client_environment(self) -> dict[str, str]:
        """libpq's variables for pg_basebackup (whose -R copies them into the replica's
        primary_conninfo, so its WAL receiver is bounded too)."""
        env = {"PGCONNECT_TIMEOUT": str(connect_timeout())}
        if self.url.password:
            env["PGPASSWORD"] = str(self.url.password)
        return env


def _inspect_primary(url: sa.URL) -> _Primary:
    """What the replica needs to know of the primary, and a clear error for each setting
    that keeps it from feeding one."""
    primary = _Primary(
        url=url,
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or SERVER_USER,
        major=int(_scalar(url, "SHOW server_version_num")) // 10000,
        limits=_limits(url),
    )
    _drop_abandoned_slots(primary)  # before counting the slots left
    facts = _rows(
        url,
        "SELECT current_setting('wal_level') AS wal_level,"
        " current_setting('max_wal_senders')::int AS max_wal_senders,"
        " current_setting('max_replication_slots')::int AS max_slots,"
        " (SELECT count(*) FROM pg_replication_slots) AS slots,"
        " (SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user)"
        " AS may_replicate",
    )[0]
    where = f"the primary at {primary.host}:{primary.port}"
    config = "postgresql.conf (or ALTER SYSTEM SET ...; a restart is needed)"
    if facts.wal_level not in ("replica", "logical"):
        raise HarnessUnavailable(
            f"{where} has wal_level={facts.wal_level}: a replica needs wal_level=replica in "
            f"{config}"
        )
    if facts.max_wal_senders < 2:
        raise HarnessUnavailable(
            f"{where} has max_wal_senders={facts.max_wal_senders}: pg_basebackup -X stream needs "
            f"2 and the replica 1; set max_wal_senders = 10 in {config}"
        )
    if facts.slots >= facts.max_slots:
        raise HarnessUnavailable(
            f"{where} has all of its max_replication_slots={facts.max_slots} in use (see "
            f"pg_replication_slots): drop the ones left behind or raise it in {config}"
        )
    if not facts.may_replicate:
        raise HarnessUnavailable(
            f"{where}: role {primary.user!r} may not replicate: ALTER ROLE {primary.user} "
            "REPLICATION"
        )
    _probe_replication(primary)
    return primary


def _limits(url: sa.URL) -> dict[str, str]:
    names = ", ".join(f"'{name}'" for name in STANDBY_LIMITS)
    rows = _rows(url, f"SELECT name, setting FROM pg_settings WHERE name IN ({names})")
    return {row.name: row.setting for row in rows}


def _probe_replication(primary: _Primary) -> None:
    """Open a replication connection as pg_basebackup and the replica will: pg_hba.conf's
    ``all`` does not cover replication, which a line of its own must allow."""
    try:
        psycopg2.connect(
            host=primary.host,
            port=primary.port,
            user=primary.user,
            password=primary.url.password,
            connect_timeout=connect_timeout(),
            connection_factory=psycopg2.extras.PhysicalReplicationConnection,
        ).close()
    except psycopg2.OperationalError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else repr(error)
        try:
            hba_file = _scalar(primary.url, "SHOW hba_file")
            rules = _rows(
                primary.url,
                "SELECT line_number, type, database, user_name, address, auth_method"
                " FROM pg_hba_file_rules WHERE 'replication' = ANY(database)",
            )
            present = "; ".join(
                f"line {r.line_number}: {r.type} replication {','.join(r.user_name or [])} "
                f"{r.address or ''} {r.auth_method}".replace("  ", " ")
                for r in rules
            )
        except sa.exc.DBAPIError:  # not a superuser: pg_hba_file_rules is closed to us
            hba_file, present = "pg_hba.conf", "(not readable)"
        raise HarnessUnavailable(
            f"the primary at {primary.host}:{primary.port} refuses replication connections "
            f"for user {primary.user!r} ({reason}); pg_basebackup and the replica need them. "
            f"Add the line `host replication {primary.user} 127.0.0.1/32 trust` (or the method "
            f"of its other 127.0.0.1 lines) to {hba_file}, above any line that would reject "
            "it (`all` in the database column does not cover replication), and reload: "
            f"SELECT pg_reload_conf(). Replication lines there now: {present or 'none'}"
        ) from error


def postgres_bindir(major: int, runner: _Runner | None = None) -> Path:
    """The folder of PostgreSQL ``major``'s programs: the running server's major version, as
    a base backup and the server reading it must be."""
    runner = runner or _Runner.for_servers()
    candidates = [Path(f"/usr/lib/postgresql/{major}/bin"), Path(f"/usr/pgsql-{major}/bin")]
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = runner.run([pg_config, "--bindir"], timeout=10, cwd=Path("/"))
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(pg_ctl).resolve().parent)
    needed = ("pg_basebackup", "pg_ctl", "postgres")
    for folder in dict.fromkeys(candidates):  # in order, once each
        if all(os.access(folder / name, os.X_OK) for name in needed):
            version = runner.run([str(folder / "pg_ctl"), "--version"], timeout=10, cwd=Path("/"))
            if re.search(rf"\(PostgreSQL\) {major}\b", version.stdout):
                return folder
    raise HarnessUnavailable(
        f"no PostgreSQL {major} programs ({', '.join(needed)}) of the running server's major "
        f"version in {', '.join(map(str, dict.fromkeys(candidates)))}: install them "
        f"(Debian: apt-get install postgresql-{major})"
    )


def _drop_abandoned_slots(primary: _Primary) -> None:
    """A run killed before its teardown leaves its slot behind, which would keep WAL on the
    primary for ever: drop the idle ones whose replica folder is gone.  Only for a primary on
    this machine, where those folders would be."""
    if not primary.local:
        return
    idle = _rows(
        primary.url,
        "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE :prefix AND NOT active",
        prefix=SLOT_PREFIX.replace("_", r"\_") + "%",
    )
    for (slot,) in idle:
        if not (SCRATCH_ROOT / (REPLICA_PREFIX + slot.removeprefix(SLOT_PREFIX))).exists():
            _drop_slot(primary.url, slot)


def _drop_slot(url: sa.URL, slot: str) -> bool:
    """Drop ``slot`` if it exists and is idle; whether it is gone."""
    with suppress(sa.exc.DBAPIError):  # dropped meanwhile, or taken again
        _rows(
            url,
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = :slot AND NOT active",
            slot=slot,
        )
    return not _scalar(
        url, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = :slot", slot=slot
    )


# --------------------------------------------------------------------------- the replica


@dataclass
class StreamingReplica:
    """A hot standby of the primary, streaming from it through a replication slot."""

    port: int
    folder: Path
    primary: _Primary
    bindir: Path
    runner: _Runner
    slot: str

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "replica.log"

    @property
    def url(self) -> sa.URL:
        """The replica's ``postgres`` database, as the primary's user."""
        return self.primary.url.set(host="127.0.0.1", port=self.port, database="postgres")

    def database_url(self, dbname: str) -> str:
        return self.url.set(database=dbname).render_as_string(hide_password=False)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)

    # ---------------------------------------------------------------- replay

    def pause_replay(self, timeout: float = 10) -> None:
        """Stop applying WAL (it is still received), once the standby has really paused: the
        next record it would apply waits, whatever arrives."""
        _scalar(self.url, "SELECT pg_wal_replay_pause()")
        if self.primary.major >= 14:  # before 14, a pause requested counts as paused
            wait_for(
                lambda: _scalar(self.url, "SELECT pg_get_wal_replay_pause_state()") == "paused",
                timeout,
                "the replica to pause its replay",
            )

    def resume_replay(self) -> None:
        _scalar(self.url, "SELECT pg_wal_replay_resume()")

    def replay_paused(self) -> bool:
        return bool(_scalar(self.url, "SELECT pg_is_wal_replay_paused()"))

    def replay_lsn(self) -> Lsn:
        """Where the replica has applied WAL up to: what its queries see."""
        return self._lsn("pg_last_wal_replay_lsn()")

    def receive_lsn(self) -> Lsn:
        """Where the replica has received WAL up to (and written it to disk)."""
        return self._lsn("pg_last_wal_receive_lsn()")

    def _lsn(self, function: str) -> Lsn:
        found = _scalar(self.url, f"SELECT {function}::text")
        if found is None:
            raise HarnessError(f"{function} is NULL on the replica: it is not a standby")
        return Lsn.parse(found)

    def wait_caught_up(self, primary_url: str | sa.URL | None = None, timeout: float = 30) -> Lsn:
        """Wait until the replica has replayed everything the primary had written when this was
        called (``pg_current_wal_lsn()``): then it sees every transaction committed before.
        Returns the replica's replay position."""
        target = Lsn.parse(
            _scalar(primary_url or self.primary.url, "SELECT pg_current_wal_lsn()::text")
        )
        deadline = time.monotonic() + timeout
        while True:
            replayed = self.replay_lsn()
            if replayed >= target:
                return replayed
            if self.replay_paused():
                raise HarnessError(
                    f"the replica's replay is paused at {replayed}, behind the primary at "
                    f"{target}: resume_replay() first"
                )
            if time.monotonic() > deadline:
                receiver = _scalar(self.url, "SELECT status FROM pg_stat_wal_receiver")
                raise HarnessError(
                    f"the replica has not caught up with the primary within {timeout:g} s: "
                    f"replayed up to {replayed}, received up to {self.receive_lsn()}, the "
                    f"primary was at {target}; WAL receiver: {receiver or 'not running'}\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    # ---------------------------------------------------------------- the server

    def running(self) -> bool:
        status = self._pg_ctl("status", timeout=10)
        return status.returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Start the replica (again) and wait until it accepts connections."""
        result = self._pg_ctl(
            "start",
            "-w",
            "-t",
            str(max(1, round(timeout))),
            "-l",
            str(self.log_file),
            "-o",
            self._server_options(),
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            raise HarnessError(
                f"the replica on port {self.port} did not start within {timeout:g} s:\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 30) -> None:
        """Stop the replica (fast: its sessions are ended) and wait until it has."""
        result = self._pg_ctl(
            "stop", "-m", "fast", "-w", "-t", str(max(1, round(timeout))), timeout=timeout + 10
        )
        if result.returncode != 0:
            raise HarnessError(
                f"the replica on port {self.port} did not stop within {timeout:g} s:\n"
                f"{result.stdout}{result.stderr}\n{self.log_tail()}"
            )

    def _server_options(self) -> str:
        settings = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.folder),
            "hot_standby": "on",
            "cluster_name": "tecnorev_replica",
            **self.primary.limits,
            "shared_buffers": "32MB",
            # a throwaway: nothing to keep across a crash of the machine
            "fsync": "off",
            # every message in the -l log, which errors quote
            "logging_collector": "off",
            # the primary's postgresql.auto.conf comes along; what it might name is not here
            "ssl": "off",
            "archive_mode": "off",
            # reconnect quickly to the primary after a restart
            "wal_retrieve_retry_interval": "500ms",
        }
        return shlex.join(
            part for name, value in settings.items() for part in ("-c", f"{name}={value}")
        )

    def _pg_ctl(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args]
        return self.runner.run(command, timeout=timeout, cwd=self.folder)

    # ---------------------------------------------------------------- making and removing

    def _base_backup(self, timeout: float) -> None:
        primary = self.primary
        command = [
            str(self.bindir / "pg_basebackup"),
            *("-h", primary.host, "-p", str(primary.port), "-U", primary.user),
            *("-D", str(self.data_dir), "-R", "-X", "stream"),
            # a slot keeps the WAL the replica still needs while it starts, and while stopped
            *("-C", "-S", self.slot),
            # a spread checkpoint could take minutes; a throwaway copy needs no fsync
            "--checkpoint=fast",
            "--no-sync",
            "--no-password",
        ]
        result = self.runner.run(
            command, timeout=timeout, cwd=self.folder, **primary.client_environment()
        )
        if result.returncode != 0:
            raise HarnessError(
                f"pg_basebackup from {primary.host}:{primary.port} failed:\n"
                f"{result.stdout}{result.stderr}"
            )

    def _configure(self) -> None:
        """The copy lacks postgresql.conf and pg_hba.conf where they live outside the data
        directory (Debian: /etc/postgresql): ours, with settings on the command line."""
        files = {
            "postgresql.conf": "# tecnorev.testing.replication: settings are on the command line\n",
            "pg_hba.conf": "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            "pg_ident.conf": "",
        }
        for name, text in files.items():
            (self.data_dir / name).write_text(text)
        self.runner.own(self.data_dir)

    def _start_on_a_free_port(self, timeout: float, attempts: int = 3) -> None:
        """Start, on another port if another process took ours meanwhile."""
        for attempt in range(attempts):
            try:
                self.start(timeout)
                return
            except HarnessError:
                taken = "Address already in use" in self.log_tail(10)
                if not taken or attempt == attempts - 1:
                    raise
                self.port = free_port()

    def _remove(self) -> None:
        """Stop the server, drop the slot, delete the folder: each tried whatever the others
        did, and what failed is reported once the rest is done."""
        problems: list[str] = []
        try:
            self._stop_for_good()
        except HarnessError as error:
            problems.append(str(error))
        try:  # the primary sees its WAL sender end a moment after the replica has
            wait_for(lambda: _drop_slot(self.primary.url, self.slot), 15, f"slot {self.slot} idle")
        except (HarnessError, sa.exc.DBAPIError) as error:
            problems.append(f"replication slot {self.slot!r} on the primary: {error}")
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():
            problems.append(f"could not remove {self.folder}")
        if problems:
            raise HarnessError("the replica was not cleaned up: " + "; ".join(problems))

    def _stop_for_good(self) -> None:
        """Stop the server if it runs: fast, then immediate, then killed."""
        for mode in ("fast", "immediate"):
            with suppress(HarnessError):  # pg_ctl itself timed out: try harder
                if not self.data_dir.exists() or not self.running():
                    return
                stopped = self._pg_ctl("stop", "-m", mode, "-w", "-t", "20", timeout=30)
                if stopped.returncode == 0:
                    return
        self._kill_postmaster()

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            return
        wait_for(lambda: not _alive(pid), 10, f"postmaster {pid} to end after SIGKILL")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def streaming_replica(
    primary_url: str | sa.URL | None = None, *, timeout: float = 120
) -> Iterator[StreamingReplica]:
    """A hot standby of ``primary_url`` (default: the test server, ``TEST_DATABASE_URL``) on a
    spare port of 127.0.0.1, running until the block ends; ``timeout`` bounds the base
    backup and the start.  HarnessUnavailable when the primary cannot feed a replica (the
    message says what to change in its configuration) or a program is missing."""
    primary = _inspect_primary(sa.make_url(primary_url or admin_url()))
    runner = _Runner.for_servers()
    bindir = postgres_bindir(primary.major, runner)
    folder = Path(tempfile.mkdtemp(prefix=REPLICA_PREFIX, dir=SCRATCH_ROOT))
    replica = StreamingReplica(
        port=free_port(),
        folder=folder,
        primary=primary,
        bindir=bindir,
        runner=runner,
        slot=SLOT_PREFIX + folder.name.removeprefix(REPLICA_PREFIX),
    )
    try:
        runner.own(folder)
        replica._base_backup(timeout)
        replica._configure()
        replica._start_on_a_free_port(timeout)
        yield replica
    finally:
        replica._remove()


# --------------------------------------------------------------------------- pgbouncer


@dataclass
class PgBouncer:
    """A running pgbouncer; each database name is passed through to the upstream server."""

    port: int
    folder: Path
    pool_mode: str
    upstream_host: str
    upstream_port: int
    user: str
    password: str
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.folder / "pgbouncer.log"

    def url_for(self, dbname: str) -> str:
        """``dbname`` of the upstream server, through the pooler."""
        return sa.URL.create(
            "postgresql+psycopg2",
            username=self.user,
            password=self.password or None,
            host=self.host,
            port=self.port,
            database=dbname,
        ).render_as_string(hide_password=False)

    def pooled(self, url: str | sa.URL) -> str:
        """``url`` (of the upstream server) through the pooler: same database and query."""
        return (
            sa.make_url(url)
            .set(host=self.host, port=self.port)
            .render_as_string(hide_password=False)
        )

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)


def pgbouncer_binary() -> str:
    for candidate in PGBOUNCER_BINARIES:
        found = shutil.which(candidate)
        if found:
            return found
    raise HarnessUnavailable(
        f"pgbouncer is not installed (looked for {', '.join(PGBOUNCER_BINARIES)}): "
        "apt-get install pgbouncer"
    )


@contextmanager
def pgbouncer(
    upstream_host: str = "127.0.0.1",
    upstream_port: int = 5432,
    pool_mode: str = "transaction",
    *,
    user: str = "postgres",
    password: str = "",
    default_pool_size: int = 20,
    max_client_conn: int = 200,
    # psycopg2 and SQLAlchemy send neither; other drivers (asyncpg, JDBC) send
    # extra_float_digits.  pgbouncer refuses a client sending one it neither tracks nor
    # ignores; an ignored `options` (-c settings) never reaches the server.
    ignore_startup_parameters: Sequence[str] = ("extra_float_digits", "options"),
    timeout: float = 15,
) -> Iterator[PgBouncer]:
    """A pgbouncer on a spare port of 127.0.0.1 in front of ``upstream_host:upstream_port``,
    every database passed through, trusting ``user`` (whose ``password`` it logs in to the
    server with, if the server wants one).  ``user`` may also open its admin console (the
    ``pgbouncer`` database).  ``timeout`` bounds its start and its stop."""
    if pool_mode not in ("session", "transaction", "statement"):
        raise ValueError(f"pool_mode {pool_mode!r}: session, transaction or statement")
    binary = pgbouncer_binary()
    runner = _Runner.for_servers()
    folder = Path(tempfile.mkdtemp(prefix=PGBOUNCER_PREFIX, dir=SCRATCH_ROOT))
    bouncer = PgBouncer(
        port=free_port(),
        folder=folder,
        pool_mode=pool_mode,
        upstream_host=upstream_host,
        upstream_port=upstream_port,
        user=user,
        password=password,
    )
    settings = {
        "listen_addr": bouncer.host,
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(folder / "userlist.txt"),
        "admin_users": user,
        "pool_mode": pool_mode,
        "max_client_conn": str(max_client_conn),
        "default_pool_size": str(default_pool_size),
        "ignore_startup_parameters": ",".join(ignore_startup_parameters),
        # a client queued for a server connection, and a server login, give up in the end
        "query_wait_timeout": "30",
        "server_connect_timeout": str(connect_timeout()),
        # logged to stderr, which goes to the log file; no pid file to clean up
        "logfile": "",
        "pidfile": "",
    }
    quoted = password.replace('"', '""')
    (folder / "userlist.txt").write_text(f'"{user}" "{quoted}"\n')
    try:
        for attempt in range(3):  # another process may take the spare port first
            (folder / "pgbouncer.ini").write_text(
                "[databases]\n"
                f"* = host={upstream_host} port={upstream_port}\n"
                "[pgbouncer]\n"
                f"listen_port = {bouncer.port}\n"
                + "".join(f"{name} = {value}\n" for name, value in settings.items())
            )
            runner.own(folder)
            with bouncer.log_file.open("wb") as log:  # this attempt's messages only
                bouncer.process = subprocess.Popen(
                    [binary, str(folder / "pgbouncer.ini")],
                    cwd=folder,
                    env=runner.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    **runner.identity(),
                )
            process = bouncer.process
            try:
                wait_for(
                    partial(_listening_or_ended, bouncer, process),
                    timeout,
                    f"pgbouncer to listen on port {bouncer.port}",
                )
            except HarnessError as error:
                raise HarnessError(f"{error}:\n{bouncer.log_tail()}") from None
            if process.poll() is None:
                break
            log_text = bouncer.log_tail()
            if "Address already in use" not in log_text or attempt == 2:
                raise HarnessError(
                    f"pgbouncer exited ({process.returncode}) instead of listening on port "
                    f"{bouncer.port}:\n{log_text}"
                )
            bouncer.port = free_port()
        yield bouncer
    finally:
        if bouncer.process is not None:
            _stop_pgbouncer(bouncer.process, timeout)
        shutil.rmtree(folder, ignore_errors=True)


def _listening_or_ended(bouncer: PgBouncer, process: subprocess.Popen[bytes]) -> bool:
    # its own word that it listens: something else may hold the port and accept too
    listening = f"listening on {bouncer.host}:{bouncer.port}" in bouncer.log_tail()
    return process.poll() is not None or (listening and accepts(bouncer.host, bouncer.port))


def _stop_pgbouncer(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGINT: a safe shutdown (transactions end first); then SIGTERM, immediate; then KILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout / 3 if sig != signal.SIGKILL else 10)
            return
        except subprocess.TimeoutExpired:
            continue
    raise HarnessError(f"pgbouncer (pid {process.pid}) did not end, even killed")
