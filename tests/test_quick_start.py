"""The quick start as a newcomer meets it: a fresh clone of the repository, ``python3 dev.py
run`` twice (the second start installs nothing), Ctrl+C stopping everything with exit code 0,
``--fresh``, ``dev.py tecnorev``, and bad settings refused before anything is built.

The times to /health are printed, never asserted (they depend on the machine's load).  The nox
bootstrap (.venv-tools) of the checkout running this test is shared when it exists, as
``python3 dev.py test`` leaves it: a newcomer's first start also creates it (~10 s more).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_clone(where: Path) -> Path:
    """The committed state, as `git clone` gives it."""
    subprocess.run(["git", "clone", "-q", str(REPO), str(where)], check=True, timeout=120)
    return where


def dev_env(database: str, port: int, *, share_tools: bool = True) -> dict[str, str]:
    """This environment without what the suite's own run put there (its venv, nox's and the
    product's settings), pointing the product at `database` and `port`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "DATABASE_URL")
        and not name.startswith(("NOX_", "TECNOREV_", "PYTEST_"))
    }
    env.update(DATABASE_URL=database, TECNOREV_PORT=str(port))
    tools = REPO / ".venv-tools"
    if share_tools and (tools / "bin" / "python").exists():
        env["DEV_PY_TOOLS"] = str(tools)
    else:
        env.pop("DEV_PY_TOOLS", None)
    return env


class Start:
    """``python3 dev.py ARGS`` in the clone, its output in a file, in a session of its own (so
    the signals are the ones this test sends)."""

    def __init__(self, clone: Path, env: dict[str, str], *args: str) -> None:
        self.log = clone.parent / f"dev-{time.monotonic_ns()}.log"
        self.began = time.monotonic()
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "dev.py", *args], cwd=clone, env=env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.port = int(env["TECNOREV_PORT"])

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, limit: float) -> float:
        """Seconds from the start until /health answers; fails past `limit` or on an exit."""
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() - self.began < limit:
            if self.process.poll() is not None:
                pytest.fail(f"dev.py exited {self.process.returncode}:\n{self.output[-5000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - self.began
            except OSError:
                time.sleep(0.1)
        self.kill()
        pytest.fail(f"no /health within {limit} s:\n{self.output[-5000:]}")

    def sessions(self) -> set[int]:
        """The sessions of dev.py's children (dev.py starts each command in one of its own)."""
        return {int(fields[3]) for fields in processes() if fields[1] == str(self.process.pid)}

    def stop(self, sig: signal.Signals) -> int:
        """Send `sig` to dev.py alone, as `kill` would; its exit code, once nothing of what it
        started is left (zombies aside: they are dead, waiting for init to reap them)."""
        sessions = self.sessions()
        assert sessions, "dev.py has no child"
        os.kill(self.process.pid, sig)
        try:
            code = self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"dev.py still running 90 s after {sig.name}:\n{self.output[-5000:]}")
        left = [fields for fields in processes() if int(fields[3]) in sessions]
        assert not left, f"left running after {sig.name}: {left}"
        return code

    def kill(self) -> None:
        for session in self.sessions() | {self.process.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, signal.SIGKILL)


def processes() -> list[list[str]]:
    """Live processes as [pid, ppid, pgrp, session, state] (zombies left out)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z":
            found.append([entry, fields[1], fields[2], fields[3], fields[0]])
    return found


def site_packages(clone: Path) -> dict[str, int]:
    """Each entry of the run environment's site-packages and its modification time."""
    (folder,) = (clone / ".nox" / "run" / "lib").glob("python3*/site-packages")
    return {entry.name: entry.stat().st_mtime_ns for entry in folder.iterdir()}


@pytest.mark.timeout(900)
def test_two_starts_the_second_reinstalling_nothing_and_ctrl_c_stopping_everything(
    tmp_path, capsys
):
    clone = fresh_clone(tmp_path / "tecnorev")
    database = f"sqlite:///{tmp_path / 'quick.db'}"

    first = Start(clone, dev_env(database, free_port()), "run")
    first_time = first.wait_healthy(limit=600)
    assert first.stop(signal.SIGINT) == 0, first.output[-3000:]
    assert "==> environment: installing every package" in first.output
    assert "password: " in first.output  # the demo admin's, shown this once
    installed = site_packages(clone)

    second = Start(clone, dev_env(database, free_port()), "run")
    second_time = second.wait_healthy(limit=180)
    assert second.stop(signal.SIGINT) == 0, second.output[-3000:]
    assert "==> environment: .nox/run is up to date: nothing to install" in second.output
    assert "pip install" not in second.output
    assert site_packages(clone) == installed
    # no password this time: how to set a new one, or to start over
    assert "password: " not in second.output
    assert "dev.py tecnorev users set-password --email admin@example.com" in second.output
    assert "python3 dev.py run --fresh" in second.output

    fresh = Start(clone, dev_env(database, free_port()), "run", "--fresh")
    fresh.wait_healthy(limit=180)
    assert fresh.stop(signal.SIGTERM) == 0, fresh.output[-3000:]
    assert "==> fresh start:" in fresh.output
    assert "password: " in fresh.output  # a new database, a new admin

    command = subprocess.run(
        [sys.executable, "dev.py", "tecnorev", "--version"], cwd=clone,
        env=dev_env(database, free_port()), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert command.returncode == 0, command.stderr
    assert command.stdout.startswith("tecnorev-api "), command.stdout  # stdout is the command's

    with capsys.disabled():
        print(
            f"\nquick start: first start {first_time:.1f} s to /health, "
            f"second {second_time:.1f} s (load {os.getloadavg()[0]:.1f})"
        )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("problem", ["port taken", "database down", "not a database URL"])
def test_bad_settings_fail_at_once_before_anything_is_built(tmp_path, problem):
    clone = fresh_clone(tmp_path / "tecnorev")
    database, port = f"sqlite:///{tmp_path / 'quick.db'}", free_port()
    with socket.socket() as holder:
        if problem == "port taken":
            holder.bind(("127.0.0.1", port))
            holder.listen()
        elif problem == "database down":
            database = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/tecnorev"
        else:
            database = "tecnorev.db"
        began = time.monotonic()
        result = subprocess.run(
            [sys.executable, "dev.py", "run"], cwd=clone,
            env=dev_env(database, port, share_tools=False),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        took = time.monotonic() - began
    assert result.returncode == 3, result.stdout + result.stderr
    expected = {
        "port taken": f"error: cannot listen on 127.0.0.1:{port}",
        "database down": "error: cannot connect to the database at postgresql+psycopg2://",
        "not a database URL": "error: DATABASE_URL='tecnorev.db' is not a database URL",
    }[problem]
    assert expected in result.stderr
    # nothing built: neither nox's own environment nor the product's
    assert not (clone / ".venv-tools").exists()
    assert not (clone / ".nox").exists()
    assert took < 60, took  # about a second on a quiet machine; bounded for a loaded one
