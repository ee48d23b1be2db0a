"""``deploy/deploy.py``: backup and migrate once, gate on ``tecnorev db status``, then restart
real processes (``deploy/placeholder_service.py`` stands in for systemd), replica by replica."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import migrate, recorded_revisions

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy" / "deploy.py"
SERVICE = REPO / "deploy" / "placeholder_service.py"
TECNOREV = str(Path(sys.executable).parent / "tecnorev")


class Replica:
    """One running placeholder service on a free port."""

    def __init__(self, folder: Path, number: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.pidfile = folder / f"replica{number}.pid"
        self.url = f"http://127.0.0.1:{self.port}/"
        self._service("start")

    def _service(self, action: str) -> None:
        subprocess.run(self.command(action), shell=True, check=True, timeout=60)

    def command(self, action: str = "restart") -> str:
        return f"{sys.executable} {SERVICE} {action} --pidfile {self.pidfile} --port {self.port}"

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text())

    def answers(self) -> bool:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return response.status == 200

    def stop(self) -> None:
        self._service("stop")


@pytest.fixture
def replicas(tmp_path):
    started: list[Replica] = []

    def start(count: int) -> list[Replica]:
        started.extend(Replica(tmp_path, n) for n in range(len(started) + 1, count + 1))
        return started

    yield start
    for replica in started:
        replica.stop()


def deploy(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, str(DEPLOY), *args, "--tecnorev", TECNOREV],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def restart_args(replicas: list[Replica], health: bool = True) -> list[str]:
    args = []
    for replica in replicas:
        args += ["--restart", replica.command()]
        if health:
            args += ["--health-url", replica.url]
    return args


def ordered(output: str, *fragments: str) -> bool:
    positions = [output.find(fragment) for fragment in fragments]
    return -1 not in positions and positions == sorted(positions)


def test_one_host_backs_up_migrates_then_restarts(tmp_path, replicas):
    (app,) = replicas(1)
    before = app.pid
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    result = deploy("all", "--backup-dir", "backups", *restart_args([app]), url=url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ordered(
        result.stdout,
        "deploy: $ ",
        "db upgrade heads --backup --backup-dir backups",
        "backed up the database to backups/shop-",
        "db status",
        "deploy: restarting replica 1 of 1",
        f"deploy: replica 1 answers {app.url}",
        "db contract",
        "deploy: done",
    ), result.stdout
    assert len(list((tmp_path / "backups").glob("shop-*.db"))) == 1
    assert app.pid != before and app.answers()
    assert recorded_revisions(url)


def test_replicas_migrate_once_then_restart_one_after_the_other(tmp_path, replicas, postgres_url):
    fleet = replicas(2)
    before = [r.pid for r in fleet]
    result = deploy("all", "--no-backup", *restart_args(fleet), url=postgres_url, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ordered(
        result.stdout,
        "db upgrade heads\n",
        "db status",
        "restarting replica 1 of 2",
        "replica 1 answers",
        "restarting replica 2 of 2",
        "replica 2 answers",
        "db contract",
        "deploy: done",
    ), result.stdout
    assert result.stdout.count("db upgrade heads") == 1
    assert [r.pid for r in fleet] != before and all(
        new != old for new, old in zip([r.pid for r in fleet], before, strict=True)
    )
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        counts = connection.execute(
            sa.text(
                "SELECT count(*) FROM tecnorev_migration_log WHERE direction = 'upgrade' "
                "GROUP BY revision"
            )
        ).scalars()
        assert set(counts) == {1}
    engine.dispose()


def test_rollout_is_gated_on_status(tmp_path, replicas):
    fleet = replicas(2)
    before = [r.pid for r in fleet]
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    migrate(url, "catalog@head")  # the other modules are pending
    result = deploy("rollout", *restart_args(fleet), url=url, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "deploy: FAILED: 'tecnorev db status' does not report every module up to date (see "
        "above), so nothing was restarted" in result.stdout
    )
    assert "restarting replica" not in result.stdout
    assert [r.pid for r in fleet] == before


def test_a_failed_migration_restarts_nothing(tmp_path, replicas):
    (app,) = replicas(1)
    before = app.pid
    unreachable = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    result = deploy("all", "--no-backup", *restart_args([app]), url=unreachable, cwd=tmp_path)
    assert result.returncode == 1
    assert "deploy: FAILED: the migration failed, so nothing was restarted" in result.stdout
    assert "cannot connect to the database" in result.stderr
    assert app.pid == before


def test_a_replica_that_does_not_come_back_stops_the_rollout(tmp_path, replicas):
    fleet = replicas(2)
    before = [r.pid for r in fleet]
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    broken = fleet[0].command("stop")  # a release whose process never starts
    result = deploy(
        "all", "--no-backup", "--health-timeout", "1",
        "--restart", broken, "--health-url", fleet[0].url,
        "--restart", fleet[1].command(), "--health-url", fleet[1].url,
        url=url, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"deploy: FAILED: replica 1 did not answer {fleet[0].url} within 1s; stopping the "
        "rollout: replica 2 still runs the previous version" in result.stdout
    )
    assert fleet[1].pid == before[1]


def test_deploy_needs_a_restart_command(tmp_path):
    result = deploy("all", url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "'all' needs at least one --restart command" in result.stderr
