"""Safe apply on PostgreSQL: the migration lock on a dedicated connection, refusing a
transaction pooler, and lock_timeout with retry so DDL never stalls the tables it alters.

The lock-timeout tests hold a real long transaction on ``product`` while a scratch revision
alters it, and time a plain SELECT arriving meanwhile: it may wait behind the queued ALTER, but
never longer than the lock timeout.  One test turns the timeout off to show that the same SELECT
then waits for as long as the long transaction lasts, so the measurement can see the effect.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.migrate import safety
from tecnorev.migrate.environment import ADVISORY_LOCK_KEY
from tecnorev.migrate.errors import MigrationError
from tecnorev.testing.core import installed_revisions, migrate, recorded_revisions, run_tecnorev

from .migrator_processes import Migrator, ScratchCatalog, scalar, wait_until, waiting_backend

pytestmark = pytest.mark.postgres

TIMEOUT_MS = 400


@pytest.fixture
def scratch(tmp_path) -> ScratchCatalog:
    catalog = ScratchCatalog(tmp_path)
    catalog.add_revision(
        "probe", "op.create_table('safe_probe', sa.Column('id', sa.Integer, primary_key=True))"
    )
    catalog.add_revision("alter", "op.add_column('product', sa.Column('note', sa.String(20)))")
    return catalog


@pytest.fixture
def at_heads(postgres_url) -> str:
    migrate(postgres_url, "heads")
    return postgres_url


@contextmanager
def long_transaction_on_product(url: str) -> Iterator[tuple[sa.Connection, int]]:
    """A session that read ``product`` and stays in its transaction: it holds ACCESS SHARE,
    which an ALTER TABLE (ACCESS EXCLUSIVE) must wait for."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    connection = engine.connect()
    try:
        pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        connection.execute(sa.text("SELECT count(*) FROM product")).all()
        yield connection, pid
    finally:
        connection.close()
        engine.dispose()


def timed_select_on_product(url: str) -> float:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            started = time.monotonic()
            connection.execute(sa.text("SELECT count(*) FROM product")).all()
            return time.monotonic() - started
    finally:
        engine.dispose()


def upgrade(scratch: ScratchCatalog, url: str, timeout: str, retries: int) -> Migrator:
    env = {
        **scratch.env,
        "TECNOREV_LOCK_TIMEOUT": timeout,
        "TECNOREV_LOCK_RETRIES": str(retries),
    }
    return Migrator("upgrade", "heads", url=url, env=env)


def columns_of_product(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("product")}
    finally:
        engine.dispose()


def test_ddl_behind_a_long_transaction_retries_and_succeeds_once_it_commits(scratch, at_heads):
    with long_transaction_on_product(at_heads) as (blocker, blocker_pid):
        migrator = upgrade(scratch, at_heads, f"{TIMEOUT_MS}ms", retries=6)
        alter_pid = wait_until(
            lambda: waiting_backend(at_heads, "ALTER TABLE product"), 30, migrator, "the ALTER"
        )
        # The migration lock is held on a connection of its own, not the migrating one.
        lock_pid = scalar(
            at_heads,
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :hi AND objid = :lo AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
            hi=ADVISORY_LOCK_KEY >> 32,
            lo=ADVISORY_LOCK_KEY & 0xFFFFFFFF,
        )
        assert lock_pid and lock_pid != alter_pid
        # A SELECT arriving now queues behind the waiting ALTER, but only until it times out.
        waited = timed_select_on_product(at_heads)
        assert waited < TIMEOUT_MS / 1000 + 0.5, f"a SELECT waited {waited:.2f}s"

        migrator.wait_for_output(r"retrying in")
        blocker.commit()
        assert migrator.finish() == 0, migrator.stderr

    assert (
        f"revision catalog_alter: a lock was not granted within 0.4s, blocked by pid "
        f"{blocker_pid} (user postgres, idle in transaction for " in migrator.stdout
    )
    assert "holding product; last query: SELECT count(*) FROM product)" in migrator.stdout
    assert "rolled back, retrying in 0.4s (attempt 2 of 7)" in migrator.stdout
    assert "note" in columns_of_product(at_heads)
    assert "catalog_alter" in recorded_revisions(at_heads)
    assert (
        scalar(
            at_heads, "SELECT count(*) FROM tecnorev_migration_log WHERE revision = 'catalog_alter'"
        )
        == 1
    )


def test_ddl_gives_up_naming_the_blocker_when_it_never_ends(scratch, at_heads):
    with long_transaction_on_product(at_heads) as (_blocker, blocker_pid):
        migrator = upgrade(scratch, at_heads, "300ms", retries=2)
        assert migrator.finish() == 1

    assert migrator.stdout.count("retrying in") == 2
    assert (
        "error: revision catalog_alter could not get the locks it needs: its DDL waited 0.3s "
        "(TECNOREV_LOCK_TIMEOUT) on each of 3 attempts" in migrator.stderr
    )
    assert f"Blocked by pid {blocker_pid} (user postgres, idle in transaction" in migrator.stderr
    assert "last query: SELECT count(*) FROM product)" in migrator.stderr
    assert f"SELECT pg_terminate_backend({blocker_pid}) ends it" in migrator.stderr
    assert "Nothing of catalog_alter was kept" in migrator.stderr
    # The revision before it in the same run stays applied; the blocked one left nothing.
    assert "note" not in columns_of_product(at_heads)
    assert "catalog_probe" in recorded_revisions(at_heads)
    upgraded = scalar(
        at_heads,
        "SELECT string_agg(revision, ',') FROM tecnorev_migration_log WHERE revision LIKE "
        "'catalog\\_%' AND direction = 'upgrade'",
    ).split(",")
    shipped = {r for r in installed_revisions() if r.startswith("catalog_")}
    assert [r for r in upgraded if r not in shipped] == ["catalog_probe"]
    # the attempt is in the ledger, with why it failed
    failed = scalar(
        at_heads,
        "SELECT note FROM tecnorev_migration_log WHERE revision = 'catalog_alter' "
        "AND direction = 'failed-upgrade'",
    )
    assert failed.startswith("MigrationError: revision catalog_alter could not get the locks")


def test_without_a_lock_timeout_a_select_waits_as_long_as_the_long_transaction(scratch, at_heads):
    hold = 1.5
    with long_transaction_on_product(at_heads) as (blocker, _pid):
        migrator = upgrade(scratch, at_heads, "0", retries=0)
        wait_until(lambda: waiting_backend(at_heads, "ALTER TABLE product"), 30, migrator, "ALTER")
        waited: list[float] = []
        select = threading.Thread(target=lambda: waited.append(timed_select_on_product(at_heads)))
        select.start()
        wait_until(lambda: waiting_backend(at_heads, "SELECT count(*) FROM product"), 10)
        time.sleep(hold)
        blocker.commit()
        select.join(30)
        assert migrator.finish() == 0, migrator.stderr
    assert waited[0] >= hold, f"the SELECT waited only {waited[0]:.2f}s"


def test_a_second_migrator_waits_for_the_lock_and_says_who_holds_it(at_heads, tmp_path):
    engine = sa.create_engine(at_heads, poolclass=sa.pool.NullPool)
    with engine.connect() as holder:
        holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
        holder.commit()
        migrator = Migrator("upgrade", "heads", url=at_heads)
        migrator.wait_for_output("waiting for the migration lock")
        holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
        holder.commit()
        assert migrator.finish() == 0, migrator.stderr
    engine.dispose()
    assert (
        f"waiting for the migration lock, held by another migrator: pid {holder_pid}"
        in migrator.stdout
    )
    assert "got the migration lock" in migrator.stdout


# --------------------------------------------------------------------------- transaction pooling


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def pgbouncer(url: str, pool_mode: str) -> Iterator[str]:
    """A real pgbouncer on a spare port in front of the test server; yields the URL through it."""
    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if binary is None:
        pytest.skip("pgbouncer is not installed (the pooling check is also tested without it)")
    server = sa.make_url(url)
    port = _free_port()
    # pgbouncer refuses to run as root; as root it drops to nobody, who must read the config.
    folder = Path(tempfile.mkdtemp(prefix="tecnorev-pgbouncer-"))
    folder.chmod(0o755)
    (folder / "users.txt").write_text(f'"{server.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server.host} port={server.port or 5432}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nauth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\npool_mode = {pool_mode}\nunix_socket_dir =\n"
        "logfile =\npidfile =\n"
    )
    for file in folder.iterdir():
        file.chmod(0o644)
    command = [binary, *(["-u", "nobody"] if os.geteuid() == 0 else []), "pgbouncer.ini"]
    process = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: _accepts(port) or process.poll() is not None, 10)
        if process.poll() is not None:
            pytest.fail(f"pgbouncer did not start: {process.stderr.read()}")
        yield server.set(port=port).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


def test_transaction_pooling_is_refused_with_the_fix(postgres_url):
    with pgbouncer(postgres_url, "transaction") as pooled:
        result = run_tecnorev("db", "upgrade", "heads", url=pooled)
    assert result.returncode == 3
    assert (
        "error: DATABASE_URL goes through a connection pooler in transaction mode (such as "
        "pgbouncer with pool_mode=transaction): two of this migrator's connections were served "
        "by the same server session" in result.stderr
    )
    assert "Nothing was changed." in result.stderr
    assert (
        "Set TECNOREV_MIGRATION_URL to the PostgreSQL server directly (or a pooler port in "
        "session mode): migrations use it, while the application keeps DATABASE_URL's "
        "transaction pool." in result.stderr
    )
    assert recorded_revisions(postgres_url) == set()

    # the fix as said: the pooler stays DATABASE_URL, migrations go to the server directly
    with pgbouncer(postgres_url, "transaction") as pooled:
        refused = run_tecnorev(
            "db", "upgrade", "heads", url=pooled, env={"TECNOREV_MIGRATION_URL": pooled}
        )
        assert refused.returncode == 3
        assert "error: TECNOREV_MIGRATION_URL goes through a connection pooler" in refused.stderr
        migrated = run_tecnorev(
            "db", "upgrade", "heads", url=pooled, env={"TECNOREV_MIGRATION_URL": postgres_url}
        )
        assert migrated.returncode == 0, migrated.stderr
        status = run_tecnorev(
            "db", "status", url=pooled, env={"TECNOREV_MIGRATION_URL": postgres_url}
        )
        assert status.returncode == 0, status.stdout + status.stderr
    assert len(recorded_revisions(postgres_url)) > 5


def test_session_pooling_migrates(postgres_url):
    with pgbouncer(postgres_url, "session") as pooled:
        result = run_tecnorev("db", "upgrade", "heads", url=pooled)
    assert result.returncode == 0, result.stderr
    status = run_tecnorev("db", "status", url=postgres_url)
    assert status.returncode == 0, status.stdout + status.stderr


def _pids_as_a_pooler_would_hand_them_out(monkeypatch, pids: list[int]) -> None:
    """Real connections, but the server pids they report are replaced, in order, by ``pids``
    (the lock connection, the migrating connection, the lock connection again)."""
    real = safety.backend_pid
    handed = iter(pids)

    def backend_pid(connection: sa.Connection) -> int:
        real(connection)  # the probe still runs on the real connection
        return next(handed)

    monkeypatch.setattr(safety, "backend_pid", backend_pid)


@pytest.mark.parametrize(
    ("pids", "finding"),
    [
        ([101, 101, 101], "two of this migrator's connections were served by the same server "
         "session (pid 101)"),
        ([101, 202, 303], "one connection moved from server session 101 to 303 between two "
         "transactions"),
    ],
    ids=["shared-session", "moved-session"],
)  # fmt: skip
def test_pooling_detection_on_real_connections(postgres_url, monkeypatch, pids, finding):
    _pids_as_a_pooler_would_hand_them_out(monkeypatch, pids)
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with (
            engine.connect() as migrating,
            pytest.raises(safety.TransactionPoolingError, match=re.escape(finding)),
            safety.session_lock(migrating, ADVISORY_LOCK_KEY, print),
        ):
            pass
        # refused before locking: nothing is left held for the next migrator
        with engine.connect() as other:
            assert other.execute(
                sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY}
            ).scalar()
    finally:
        engine.dispose()


def test_a_direct_connection_holds_the_lock_on_its_own_session(postgres_url):
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with (
            engine.connect() as migrating,
            safety.session_lock(migrating, ADVISORY_LOCK_KEY, print) as held,
        ):
            assert held is not None and held.pid != held.migrator_pid
            holders = scalar(
                postgres_url,
                "SELECT array_agg(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = :hi AND objid = :lo AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
                hi=ADVISORY_LOCK_KEY >> 32,
                lo=ADVISORY_LOCK_KEY & 0xFFFFFFFF,
            )
            assert holders == [held.pid]
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("value", "milliseconds"),
    [("", 3000), ("500ms", 500), ("3s", 3000), ("1.5s", 1500), ("2", 2), ("1min", 60000),
     ("0", 0), ("off", 0)],
)  # fmt: skip
def test_lock_timeout_setting(monkeypatch, value, milliseconds):
    monkeypatch.setenv("TECNOREV_LOCK_TIMEOUT", value)
    assert safety.LockTimeout.from_env().milliseconds == milliseconds


def test_a_malformed_lock_timeout_is_refused_before_anything_runs(at_heads, scratch):
    result = run_tecnorev(
        "db", "upgrade", "heads", url=at_heads,
        env={**scratch.env, "TECNOREV_LOCK_TIMEOUT": "soon"},
    )  # fmt: skip
    assert result.returncode == 3
    assert (
        "error: TECNOREV_LOCK_TIMEOUT='soon' is not a duration: use e.g. 3s, 500ms, or 0"
        in result.stderr
    )
    assert "catalog_probe" not in recorded_revisions(at_heads)


def test_retry_delays_double_from_the_timeout_and_are_capped(monkeypatch):
    policy = safety.LockTimeout(milliseconds=3000, retries=6)
    assert [policy.delay_before(n) for n in range(2, 8)] == [3, 6, 12, 24, 30, 30]
    monkeypatch.setenv("TECNOREV_LOCK_RETRIES", "many")
    with pytest.raises(MigrationError, match="TECNOREV_LOCK_RETRIES='many'"):
        safety.LockTimeout.from_env()
