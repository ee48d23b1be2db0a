"""Several replicas starting at once on an empty PostgreSQL database.

Each trial releases three ``upgrade heads`` processes together (they import everything first,
then wait for a shared start time).  With the advisory lock every process succeeds and the
schema is applied once; without it the same trial fails, proving the test can see the race.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import require_postgres, temporary_postgres_database

# twenty trials of three migrators each: about 100 s on a loaded machine
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]

MIGRATOR = """
import os, sys, time
from tecnorev.migrate import cli, environment, autogen  # import before the start line
start = float(os.environ["START_AT"])
time.sleep(max(0.0, start - time.time()))
sys.exit(cli.main(["upgrade", "heads"]))
"""


def run_trial(lock: bool) -> tuple[list[int], str]:
    with temporary_postgres_database() as url:
        env = {**os.environ, "DATABASE_URL": url, "START_AT": str(time.time() + 2.0)}
        env["TECNOREV_MIGRATION_LOCK"] = "on" if lock else "off"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATOR],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        codes = [p.returncode for p in procs]
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            applied = (
                conn.execute(
                    sa.text(
                        "SELECT revision, count(*) FROM tecnorev_migration_log "
                        "WHERE direction = 'upgrade' GROUP BY revision"
                    )
                ).all()
                if sa.inspect(conn).has_table("tecnorev_migration_log")
                else []
            )
        engine.dispose()
        if all(c == 0 for c in codes):
            assert applied and all(count == 1 for _, count in applied), applied
        return codes, "\n".join(err for _, err in outputs)


def test_twenty_trials_with_the_lock_all_succeed_once():
    require_postgres()
    for trial in range(20):
        codes, errors = run_trial(lock=True)
        assert codes == [0, 0, 0], f"trial {trial}: {codes}\n{errors}"


def test_without_the_lock_the_race_shows():
    require_postgres()
    for _ in range(20):
        codes, _ = run_trial(lock=False)
        if any(codes):
            return
    pytest.fail("20 unlocked trials never collided: this test cannot see the race")
