"""A migrator killed (SIGKILL) at a deterministic point of a revision, on PostgreSQL.

Three scratch revisions on top of catalog: ``crash_one`` (applied before the kill), ``crash_two``
(killed inside) and ``crash_three``.  The kill points are reached without sleeping-and-hoping,
and without hooks in the product:

* inside a DDL statement: ``crash_two`` runs ``CREATE TABLE ... AS SELECT ... FROM
  pg_advisory_xact_lock(k)`` while the test holds ``k``; the kill comes once pg_stat_activity
  shows that statement waiting;
* after the DDL, before the version row: ``crash_two``'s Python code writes a marker file after
  its DDL and then sleeps; the kill comes once the marker exists;
* after the version row, before the ledger row: a trigger on ``alembic_version`` waits on an
  advisory lock held by the test when the row becomes ``crash_two``; alembic writes the ledger
  row only after that statement returns.

After each kill: ``crash_one`` is applied, recorded and in the ledger; nothing of ``crash_two``
is anywhere.  The rerun completes, every revision is applied exactly once, and ``tecnorev db
verify`` is clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import migrate, recorded_revisions, run_tecnorev

from .migrator_processes import Migrator, ScratchCatalog, scalar, wait_until, waiting_backend

pytestmark = pytest.mark.postgres

TEST_LOCK = 424_242
CREATE = "op.create_table('{0}', sa.Column('id', sa.Integer, primary_key=True))"
SCRATCH = ("catalog_crash_one", "catalog_crash_two", "catalog_crash_three")
TABLES = {"catalog_crash_one": "crash_one", "catalog_crash_two": "crash_two",
          "catalog_crash_three": "crash_three"}  # fmt: skip

CRASH_TWO = {
    # crash_two is created first, so the kill also shows that an earlier statement of the
    # revision is undone; the blocking statement is PostgreSQL's alone (verify replays the
    # revisions on SQLite).
    "inside-ddl": (
        f"{CREATE.format('crash_two')}\n"
        "if op.get_bind().dialect.name == 'postgresql':\n"
        "    op.execute('CREATE TABLE crash_two_probe AS SELECT 1 AS id "
        f"FROM pg_advisory_xact_lock({TEST_LOCK})')\n"
        "    op.drop_table('crash_two_probe')"
    ),
    "after-ddl": (
        f"{CREATE.format('crash_two')}\n"
        "if 'CRASH_MARKER' in os.environ:\n"
        "    Path(os.environ['CRASH_MARKER']).write_text('after the DDL')\n"
        "    time.sleep(600)"
    ),
    "after-version-row": CREATE.format("crash_two"),
}

# Fires when alembic_version is moved to crash_two: the row is written, the statement (and so
# the ledger row that alembic writes after it) waits for the test's advisory lock.
TRIGGER = f"""
CREATE FUNCTION crash_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_advisory_xact_lock({TEST_LOCK}); RETURN NEW; END $$;
CREATE TRIGGER crash_test_hold AFTER INSERT OR UPDATE ON alembic_version FOR EACH ROW
WHEN (NEW.version_num = 'catalog_crash_two') EXECUTE FUNCTION crash_test_hold();
"""


@pytest.fixture
def engine(postgres_url):
    migrate(postgres_url, "heads")
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def scratch_with(tmp_path: Path, point: str) -> ScratchCatalog:
    scratch = ScratchCatalog(tmp_path)
    for table in TABLES.values():
        scratch.add_table_model(table)
    scratch.add_revision("crash_one", CREATE.format("crash_one"))
    scratch.add_revision("crash_two", CRASH_TWO[point])
    scratch.add_revision("crash_three", CREATE.format("crash_three"))
    return scratch


def applied_scratch_revisions(url: str) -> list[str]:
    recorded = recorded_revisions(url)
    mine = [r for r in SCRATCH if r in recorded]
    assert len(mine) <= 1, recorded
    return list(SCRATCH[: SCRATCH.index(mine[0]) + 1]) if mine else []


def assert_consistent(url: str, expected: list[str]) -> None:
    """alembic_version, the ledger and the schema tell the same story: each scratch revision
    is in all three or in none, and no revision was ever applied twice."""
    assert applied_scratch_revisions(url) == expected
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        ledger = dict(
            connection.execute(
                sa.text(
                    "SELECT revision, count(*) FROM tecnorev_migration_log "
                    "WHERE direction = 'upgrade' GROUP BY revision"
                )
            ).all()
        )
    engine.dispose()
    for revision, table in TABLES.items():
        applied = revision in expected
        assert (table in tables) == applied, (revision, sorted(tables))
        assert ledger.get(revision, 0) == (1 if applied else 0), (revision, ledger)
    assert "crash_two_probe" not in tables
    assert set(ledger.values()) == {1}, ledger


def migrator_sessions(url: str) -> int:
    return scalar(  # type: ignore[return-value]
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'tecnorev db'",
    )


@pytest.mark.parametrize("point", list(CRASH_TWO))
def test_a_migrator_killed_mid_revision_leaves_it_all_or_nothing(
    point, tmp_path, engine, postgres_url
):
    scratch = scratch_with(tmp_path, point)
    marker = tmp_path / "marker"
    env = {**scratch.env, "CRASH_MARKER": str(marker), "TECNOREV_LOCK_TIMEOUT": "0"}
    with engine.connect() as test_session:
        if point == "after-version-row":
            test_session.exec_driver_sql(TRIGGER)
            test_session.commit()
        test_session.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": TEST_LOCK})
        test_session.commit()

        migrator = Migrator("upgrade", "heads", url=postgres_url, env=env)
        reached = {
            "inside-ddl": lambda: waiting_backend(postgres_url, "CREATE TABLE crash_two_probe"),
            "after-ddl": marker.exists,
            "after-version-row": lambda: waiting_backend(postgres_url, "UPDATE alembic_version"),
        }[point]
        wait_until(reached, 60, migrator, f"the kill point {point}")
        migrator.kill()

        # The killed client's server session may still be inside its statement: let it run to
        # the end, find its client gone, and roll back.
        test_session.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": TEST_LOCK})
        if point == "after-version-row":
            test_session.exec_driver_sql("DROP TRIGGER crash_test_hold ON alembic_version")
        test_session.commit()
    wait_until(lambda: migrator_sessions(postgres_url) == 0, 30, what="the killed sessions to end")

    assert migrator.process.returncode == -9
    assert_consistent(postgres_url, ["catalog_crash_one"])

    rerun = run_tecnorev("db", "upgrade", "heads", url=postgres_url, env=scratch.env)
    assert rerun.returncode == 0, rerun.stderr
    assert "Running upgrade catalog_crash_one -> catalog_crash_two" in rerun.stderr
    assert_consistent(postgres_url, list(SCRATCH))

    verify = run_tecnorev("db", "verify", url=postgres_url, env=scratch.env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
