"""Expand and contract.  A module replaces a column in three revisions: add the new column
(expand) with a backfill declared, then make it NOT NULL and drop the old one (contract).

On PostgreSQL ``upgrade heads`` applies the expand revisions and runs the backfill, holds the
contract back (status: "contract pending", exit 0, ready); ``contract`` is refused while a live
replica reports code older than the contract revision, or while the backfill is unfinished,
and runs once neither holds.  On SQLite the three run in one upgrade.  A backfill killed with
SIGKILL at ten random points resumes each time and ends with the rows an uninterrupted run
leaves (every row updated exactly once)."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import run_tecnorev

from .test_squash import rev, write_module, write_revision

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROWS = 2_500

_CREATE = """

def upgrade() -> None:
    op.create_table(
        "zd_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("zd_item")
"""

_EXPAND = """
from tecnorev.migrate import backfill


def upgrade() -> None:
    op.add_column("zd_item", sa.Column("title", sa.String(80), nullable=True))
    backfill.declare(
        "zd_item_title",
        table="zd_item",
        assign="title = upper(name), hits = hits + 1",
        where="title IS NULL",
    )


def downgrade() -> None:
    with op.batch_alter_table("zd_item") as batch:
        batch.drop_column("title")
"""

_CONTRACT = """
phase = "contract"


def upgrade() -> None:
    with op.batch_alter_table("zd_item") as batch:
        batch.alter_column("title", existing_type=sa.String(80), nullable=False)
        batch.drop_column("name")


def downgrade() -> None:
    with op.batch_alter_table("zd_item") as batch:
        batch.add_column(sa.Column("name", sa.String(80), nullable=True))
        batch.alter_column("title", existing_type=sa.String(80), nullable=True)
    op.execute("UPDATE zd_item SET name = lower(title)")
"""

CREATE, EXPAND, CONTRACT = (rev("zd", step) for step in (1, 2, 3))


@pytest.fixture
def project(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    folder = write_module(site, "zd")
    write_revision(folder, "zd", 1, _CREATE)
    write_revision(folder, "zd", 2, _EXPAND)
    write_revision(folder, "zd", 3, _CONTRACT)
    return {"env": {"PYTHONPATH": str(site)}, "cwd": tmp_path}


def db(project: dict, url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_tecnorev(
        "db", *args, url=url, env={**project["env"], **env}, cwd=project["cwd"], timeout=300
    )


def ok(project: dict, url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = db(project, url, *args, **env)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def zd_status(project: dict, url: str) -> tuple[int, dict, bool]:
    result = db(project, url, "status", "--json")
    report = json.loads(result.stdout)
    row = next(m for m in report["modules"] if m["module"] == "zd")
    return result.returncode, row, report["ready"]


def execute(url: str, sql: str, **params: object) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(sql), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def seed(url: str, rows: int = ROWS) -> None:
    values = ", ".join(f"({i}, 'item {i}')" for i in range(1, rows + 1))
    execute(url, f"INSERT INTO zd_item (id, name) VALUES {values}")


def report_replica(url: str, replica: str, heads: list[str], *, expires_in: str) -> None:
    execute(
        url,
        "INSERT INTO tecnorev_replica (replica, host, pid, started_at, seen_at, expires_at, "
        "modules) VALUES (:r, 'web-1', 4242, now(), now(), now() + CAST(:e AS interval), :m)",
        r=replica,
        e=expires_in,
        m=json.dumps({"zd": {"version": "1.0", "heads": heads}}),
    )


def columns(url: str) -> dict[str, bool]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {c["name"]: c["nullable"] for c in sa.inspect(connection).get_columns("zd_item")}
    finally:
        engine.dispose()


def test_postgresql_expands_then_contracts_once_no_old_replica_is_left(
    project: dict, postgres_url: str
) -> None:
    ok(project, postgres_url, "upgrade", f"zd@{CREATE}")
    seed(postgres_url)

    upgraded = ok(project, postgres_url, "upgrade", "heads")
    assert f"held back contract revision(s) {CONTRACT}" in upgraded.stdout + upgraded.stderr
    code, row, ready = zd_status(project, postgres_url)
    assert (code, row["state"], ready) == (0, "contract pending", True)
    assert row["contract_revisions"] == [CONTRACT]
    assert "contract zd" in row["note"]
    # the backfill ran with the upgrade: every row once, the old column still there
    assert execute(postgres_url, "SELECT count(*) FROM zd_item WHERE title = upper(name)") == [
        (ROWS,)
    ]
    assert execute(postgres_url, "SELECT min(hits), max(hits) FROM zd_item") == [(1, 1)]
    assert columns(postgres_url) == {"id": False, "name": False, "hits": False, "title": True}
    assert ok(project, postgres_url, "upgrade", "heads").returncode == 0  # idempotent
    assert zd_status(project, postgres_url)[1]["state"] == "contract pending"
    # the guide's `check` compares against a database at every head: it says how to get there
    checked = db(project, postgres_url, "check")
    assert checked.returncode == 1 and "upgrade heads --contract" in checked.stderr, checked.stderr

    # a live replica still runs the expand release: contract is refused, nothing changes
    report_replica(postgres_url, "web-1:4242:aa", [EXPAND], expires_in="1 minute")
    report_replica(postgres_url, "web-2:1:bb", [CONTRACT], expires_in="1 minute")
    report_replica(postgres_url, "web-3:1:cc", [CREATE], expires_in="-1 second")  # expired
    listed = ok(project, postgres_url, "replicas", "--json")
    assert sorted(r["replica"] for r in json.loads(listed.stdout)) == [
        "web-1:4242:aa",
        "web-2:1:bb",
    ]
    refused = db(project, postgres_url, "contract")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "replica web-1:4242:aa (pid 4242 on web-1) runs zd 1.0, whose code predates" in (
        refused.stderr
    )
    assert "web-2" not in refused.stderr and "web-3" not in refused.stderr
    assert zd_status(project, postgres_url)[1]["state"] == "contract pending"
    log = ok(project, postgres_url, "log", "--json").stdout
    assert "failed-upgrade" not in log  # a refusal is not a failed attempt

    # with --wait, contract asks again until the old replica is restarted on the new release
    # (it withdraws its report)
    waiting = subprocess.Popen(
        [sys.executable, "-c", "import sys; from tecnorev.core.cli import main; sys.exit(main())",
         "db", "contract", "zd", "--wait", "240"],
        env={**os.environ, **project["env"], "DATABASE_URL": postgres_url}, cwd=project["cwd"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in waiting.stderr], daemon=True).start()
        while "waiting up to 240s" not in lines.get(timeout=120):
            pass
        ok(project, postgres_url, "replicas", "--forget", "web-1:4242:aa")
        waiting.wait(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0
    code, row, _ready = zd_status(project, postgres_url)
    assert (code, row["state"]) == (0, "up to date")
    assert columns(postgres_url) == {"id": False, "hits": False, "title": False}


def test_contract_waits_for_its_backfill(project: dict, postgres_url: str) -> None:
    ok(project, postgres_url, "upgrade", f"zd@{CREATE}")
    seed(postgres_url)
    deferred = ok(project, postgres_url, "upgrade", "heads", "--no-backfill")
    assert "backfills not run (--no-backfill): zd_item_title" in deferred.stdout
    status = db(project, postgres_url, "backfill", "status", "--json")
    assert status.returncode == 1
    (job,) = json.loads(status.stdout)
    assert (job["name"], job["state"], job["revision"]) == ("zd_item_title", "pending", EXPAND)

    # contract runs the backfills before it first, unless told not to
    refused = db(project, postgres_url, "upgrade", "heads", "--contract", "--no-backfill")
    assert refused.returncode == 1
    assert "backfill zd_item_title" in refused.stderr and "is unfinished" in refused.stderr
    assert "tecnorev db backfill run zd_item_title" in refused.stderr

    ran = ok(project, postgres_url, "backfill", "run", "--batch-size", "700")
    assert "zd_item_title: done: 2,500 rows updated" in ran.stderr
    (job,) = json.loads(ok(project, postgres_url, "backfill", "status", "--json").stdout)
    assert (job["state"], job["rows_updated"], job["batches"]) == ("done", ROWS, 4)
    ok(project, postgres_url, "upgrade", "heads", "--contract")
    assert zd_status(project, postgres_url)[1]["state"] == "up to date"

    # reverting the revision that declared the backfill takes its record away
    ok(project, postgres_url, "downgrade", f"zd@{CREATE}", "--yes")
    assert json.loads(ok(project, postgres_url, "backfill", "status", "--json").stdout) == []


def test_sqlite_runs_both_phases_in_one_upgrade(project: dict, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    # the contract revision may drop the old column (its phase says when it runs); an
    # expensive NOT NULL is still flagged, in any phase
    linted = db(project, url, "lint", "zd")
    assert "TR110" in linted.stdout and "TR105" not in linted.stdout, linted.stdout
    graph = ok(project, url, "graph", "--revisions").stdout
    (node,) = [line for line in graph.splitlines() if CONTRACT in line and "[" in line]
    assert node.endswith('(contract)"]'), graph
    ok(project, url, "upgrade", f"zd@{CREATE}")
    seed(url)
    upgraded = ok(project, url, "upgrade", "heads")
    assert "held back" not in upgraded.stdout + upgraded.stderr
    assert zd_status(project, url)[:2][1]["state"] == "up to date"
    assert columns(url) == {"id": False, "hits": False, "title": False}
    assert execute(url, "SELECT count(*) FROM zd_item WHERE title = upper('item ' || id)") == [
        (ROWS,)
    ]


def _reset_backfill(url: str) -> None:
    execute(url, "UPDATE zd_item SET title = NULL, hits = 0")
    execute(
        url,
        "UPDATE tecnorev_backfill SET state = 'pending', last_key = NULL, rows_scanned = 0, "
        "rows_updated = 0, rows_total = NULL, batches = 0, started_at = NULL, "
        "finished_at = NULL",
    )


def _scanned(url: str) -> int:
    rows = execute(url, "SELECT rows_scanned FROM tecnorev_backfill")
    return rows[0][0] if rows else 0


def test_a_backfill_killed_at_random_points_resumes_and_ends_as_an_uninterrupted_one(
    project: dict, database_url: str
) -> None:
    rows = 6_000
    ok(project, database_url, "upgrade", f"zd@{CREATE}")
    seed(database_url, rows)
    ok(project, database_url, "upgrade", f"zd@{EXPAND}", "--no-backfill")
    ok(project, database_url, "backfill", "run", "--batch-size", "150")
    expected = execute(database_url, "SELECT id, title, hits FROM zd_item ORDER BY id")
    assert {hits for _id, _title, hits in expected} == {1}

    chooser = random.Random(os.environ.get("PYTEST_XDIST_WORKER", "") + "kill points")
    command = [
        sys.executable,
        "-c",
        "import sys; from tecnorev.core.cli import main; sys.exit(main())",
        *("db", "backfill", "run", "--batch-size", "150", "--pause", "0.01"),
    ]
    env = {**os.environ, **project["env"], "DATABASE_URL": database_url}
    kills = attempts = 0
    while kills < 10:
        attempts += 1
        assert attempts <= 30, f"only {kills} of 10 kills landed mid-backfill in 30 tries"
        _reset_backfill(database_url)
        target = chooser.randint(1, rows - 1500)
        child = subprocess.Popen(
            command, env=env, cwd=project["cwd"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 120
            while _scanned(database_url) < target and child.poll() is None:
                assert time.monotonic() < deadline, f"kill {kills}: no progress"
                time.sleep(0.005)
            time.sleep(chooser.random() * 0.02)  # anywhere inside a batch or a pause
            landed = child.poll() is None
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(30)
        if not landed:
            continue  # a loaded machine let it finish first: not a kill point, try again
        kills += 1
        interrupted = _scanned(database_url)
        assert interrupted < rows, f"kill {kills}: killed after the end ({interrupted} rows)"
        resumed = ok(project, database_url, "backfill", "run", "--batch-size", "150")
        if interrupted:
            assert f"resuming after {interrupted}" in resumed.stderr
        assert execute(database_url, "SELECT id, title, hits FROM zd_item ORDER BY id") == (
            expected
        ), f"kill {kills} (after {interrupted} rows)"
        (job,) = json.loads(ok(project, database_url, "backfill", "status", "--json").stdout)
        assert (job["state"], job["rows_updated"], job["rows_scanned"]) == ("done", rows, rows)
