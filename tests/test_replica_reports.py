"""Real ``tecnorev serve`` replicas report the release they run, and ``tecnorev db contract``
waits for them.  A replica of the previous release (the module without its contract revision)
holds the contract back; one of the new release does not, and is ready before the contract
runs; a replica stopped cleanly withdraws its report at once; one killed with SIGKILL holds
the contract back until its report expires (three report intervals).  On PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .test_api_deployment import free_port, get
from .test_phases import _CONTRACT, _CREATE, _EXPAND, CONTRACT, EXPAND, db, ok
from .test_squash import write_module, write_revision

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TECNOREV = str(Path(sys.executable).parent / "tecnorev")
INTERVAL = "1s"
START_TIMEOUT = 60.0


def release(site: Path, *, with_contract: bool) -> dict:
    folder = write_module(site, "zd")
    write_revision(folder, "zd", 1, _CREATE)
    write_revision(folder, "zd", 2, _EXPAND)
    if with_contract:
        write_revision(folder, "zd", 3, _CONTRACT)
    return {"env": {"PYTHONPATH": str(site)}, "cwd": site.parent}


@contextmanager
def replica(project: dict, url: str, log: Path) -> Iterator[tuple[subprocess.Popen, dict]]:
    """A ``tecnorev serve`` of ``project``'s release, ready; yields it and its /ready body."""
    port = free_port()
    env = {
        **os.environ,
        **project["env"],
        "DATABASE_URL": url,
        "TECNOREV_REPLICA_REPORT_INTERVAL": INTERVAL,
    }
    env.pop("TECNOREV_ENV", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [TECNOREV, "serve", "--port", str(port)],
            env=env,
            cwd=project["cwd"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            try:
                status, body = get(f"http://127.0.0.1:{port}/ready")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        yield process, body
    finally:
        stop(process)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def reports(project: dict, url: str) -> dict[str, list[str]]:
    listed = json.loads(ok(project, url, "replicas", "--json").stdout)
    return {r["replica"]: r["modules"]["zd"]["heads"] for r in listed}


def test_contract_waits_for_replicas_of_the_previous_release(
    tmp_path: Path, postgres_url: str
) -> None:
    old = release(tmp_path / "old" / "site", with_contract=False)
    new = release(tmp_path / "new" / "site", with_contract=True)
    ok(new, postgres_url, "upgrade", "heads")  # expand: zd stands on EXPAND

    with replica(old, postgres_url, tmp_path / "old.log") as (previous, body):
        old_id = body["replica"]
        assert reports(new, postgres_url) == {old_id: [EXPAND]}
        refused = db(new, postgres_url, "contract")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"replica {old_id} (pid " in refused.stderr
        assert f"whose code predates {CONTRACT}" in refused.stderr

        # the new release serves before the contract, beside the old one
        with replica(new, postgres_url, tmp_path / "new.log") as (_current, new_body):
            assert new_body["modules"]["zd"] == "contract pending"
            assert reports(new, postgres_url) == {old_id: [EXPAND], new_body["replica"]: [CONTRACT]}
            stop(previous)  # a clean stop withdraws the report at once
            assert reports(new, postgres_url) == {new_body["replica"]: [CONTRACT]}
            ok(new, postgres_url, "contract")
        assert reports(new, postgres_url) == {}


def test_a_killed_replica_holds_the_contract_back_until_its_report_expires(
    tmp_path: Path, postgres_url: str
) -> None:
    old = release(tmp_path / "old" / "site", with_contract=False)
    new = release(tmp_path / "new" / "site", with_contract=True)
    ok(new, postgres_url, "upgrade", "heads")
    with replica(old, postgres_url, tmp_path / "old.log") as (previous, body):
        stop(previous, signal.SIGKILL)
    assert body["replica"] in reports(new, postgres_url)  # nobody withdrew it
    assert db(new, postgres_url, "contract").returncode == 1
    deadline = time.monotonic() + 60
    while reports(new, postgres_url):
        assert time.monotonic() < deadline, "the killed replica's report never expired"
        time.sleep(0.5)
    ok(new, postgres_url, "contract")
    assert db(new, postgres_url, "status").returncode == 0
