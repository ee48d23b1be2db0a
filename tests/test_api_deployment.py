"""``tecnorev serve`` in a real virtual environment built from our wheels: the service is
what is installed and migrated, a package installed into a running deployment appears after a
restart, several workers serve, and production refuses a weak key with a message."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tecnorev.testing.core import require_postgres, temporary_postgres_database

from .venvs import REPO, make_venv, pip, run_in

START_TIMEOUT = 60.0
SERVICE_TAG = "service"


@pytest.fixture(scope="module")
def api_wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("api-wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(REPO / "services" / "api")],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("tecnorev_api-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheels, api_wheel) -> Path:
    """core, auth, catalog and the api service, with their dependencies from the index."""
    root = tmp_path_factory.mktemp("api-deploy") / "venv"
    return make_venv(
        root, wheels["core"], wheels["migrate"], wheels["auth"], wheels["catalog"], api_wheel
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def child_env(url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": url, **(extra or {})}
    env.pop("PYTHONPATH", None)  # nothing from the development tree
    if not extra or "TECNOREV_ENV" not in extra:
        env.pop("TECNOREV_ENV", None)
        env.pop("SECRET_KEY", None)
    return env


class Server:
    """A ``tecnorev serve`` process (and its workers) in a process group of its own."""

    def __init__(self, venv: Path, url: str, cwd: Path, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"serve-{self.port}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(venv / "bin" / "tecnorev"), "serve", "--port", str(self.port), *args],
                env=child_env(url),
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def get(self, path: str) -> tuple[int, Any]:
        return get(self.base + path)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tecnorev serve exited {self.process.returncode}:\n{self.output}")
            try:
                if self.get("/health")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        pytest.fail(f"tecnorev serve did not answer /health in {START_TIMEOUT} s:\n{self.output}")

    @property
    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@contextmanager
def serving(venv: Path, url: str, cwd: Path, *args: str) -> Iterator[Server]:
    server = Server(venv, url, cwd, *args)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def tags_and_paths(server: Server) -> tuple[list[str], dict[str, set[str]]]:
    """The document's tags, and each tag's paths."""
    status, openapi = server.get("/openapi.json")
    assert status == 200
    paths: dict[str, set[str]] = {}
    for path, item in openapi["paths"].items():
        for operation in item.values():
            for tag in operation.get("tags", []):
                paths.setdefault(tag, set()).add(path)
    return [t["name"] for t in openapi["tags"]], paths


def assert_serves_exactly(server: Server, modules: list[str]) -> None:
    tags, paths = tags_and_paths(server)
    assert tags == [SERVICE_TAG, *modules]
    assert set(paths) <= {SERVICE_TAG, *modules}, paths
    assert paths[SERVICE_TAG] == {"/health", "/ready"}
    for module in modules:
        assert all(p.startswith("/api/v1/") for p in paths.get(module, ())), paths
    status, health = server.get("/health")
    assert (status, health["status"]) == (200, "ok")
    assert set(health["modules"]) == {"core", *modules}  # core's outbox: every project has it
    assert set(health["distributions"]) >= {"tecnorev-core", *(f"tecnorev-{m}" for m in modules)}


OTHER_MODULES_CODES = ("orders:", "coupons:", "shipments:", "payments:", "inventory:", "branches:")


def assert_no_codes_but(venv: Path, url: str, server: Server, codes: set[str]) -> None:
    """Only ``codes`` exist: in the database, in the installed code (auth's history of
    revisions aside) and in the served contract."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        registered = set(conn.execute(sa.text("SELECT code FROM permission")).scalars())
        granted = set(conn.execute(sa.text("SELECT permission FROM role_permission")).scalars())
    engine.dispose()
    assert registered == codes
    assert granted <= codes

    declared = run_in(venv, "python", "-c", DECLARED, url=url, cwd=venv)
    assert declared.returncode == 0, declared.stderr
    assert json.loads(declared.stdout) == sorted(codes)
    site = run_in(venv, "python", "-c", "import tecnorev.auth, sys; print(tecnorev.auth.__path__[0])",
                  url=url, cwd=venv).stdout.strip()  # fmt: skip
    for path in Path(site).parent.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert not any(f'"{prefix}' in text for prefix in OTHER_MODULES_CODES), path

    status, openapi = server.get("/openapi.json")
    assert status == 200
    text = json.dumps(openapi)
    assert not any(prefix in text for prefix in OTHER_MODULES_CODES)


DECLARED = "import json; from tecnorev.auth.permissions import declared; print(json.dumps(sorted(declared())))"


@pytest.mark.postgres
@pytest.mark.slow
def test_the_service_is_what_is_installed_and_a_new_package_appears_after_restart(
    venv, wheels, tmp_path
):
    require_postgres()
    with temporary_postgres_database() as url:
        upgrade = run_in(venv, "tecnorev", "db", "upgrade", "heads", url=url, cwd=tmp_path)
        assert upgrade.returncode == 0, upgrade.stderr

        with serving(venv, url, tmp_path) as server:
            assert_serves_exactly(server, ["auth", "catalog"])
            status, ready = server.get("/ready")
            assert status == 200, ready
            assert ready["modules"] == {m: "up to date" for m in ("auth", "core", "catalog")}
            assert_no_codes_but(venv, url, server, {"users:read", "users:manage", "catalog:manage"})

            # Installed into the running deployment's environment: the process serving
            # does not change under its clients.
            pip(venv, "install", "-q", "--no-deps", str(wheels["inventory"]))
            assert_serves_exactly(server, ["auth", "catalog"])
            assert server.get("/ready")[0] == 200

        # Restarted before migrating: the new module's code is loaded, its schema is not.
        with serving(venv, url, tmp_path) as server:
            assert_serves_exactly(server, ["auth", "catalog", "inventory"])
            status, ready = server.get("/ready")
            assert status == 503, ready
            assert list(ready["behind"]) == ["inventory"]
            assert ready["behind"]["inventory"]
            assert all(r.startswith("inventory_") for r in ready["behind"]["inventory"])
            assert "migrations pending for inventory" in server.output

        upgrade = run_in(venv, "tecnorev", "db", "upgrade", "heads", url=url, cwd=tmp_path)
        assert upgrade.returncode == 0, upgrade.stderr

        with serving(venv, url, tmp_path) as server:
            assert_serves_exactly(server, ["auth", "catalog", "inventory"])
            status, ready = server.get("/ready")
            assert status == 200, ready
            assert ready["modules"]["inventory"] == "up to date"


@pytest.mark.slow
def test_two_workers_serve(venv, tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    assert run_in(venv, "tecnorev", "db", "upgrade", "heads", url=url, cwd=tmp_path).returncode == 0
    with serving(venv, url, tmp_path, "--workers", "2") as server:
        deadline = time.monotonic() + START_TIMEOUT
        while server.output.count("Started server process") < 2:
            assert time.monotonic() < deadline, server.output
            time.sleep(0.2)
        for _ in range(20):
            assert server.get("/health")[0] == 200
        assert server.get("/ready")[0] == 200
        workers = [
            int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", server.output)
        ]
        assert len(workers) == 2, server.output
        # each worker listens on a socket of its own ...
        # "Started server process" comes before a worker's start-up ends and it listens
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            listening = [sockets_of(pid, server.port, LISTENING) for pid in workers]
            if all(listening) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [len(sockets) for sockets in listening] == [1, 1]
        assert listening[0] != listening[1]
        # ... so a burst of connections, as a client pool opens them, reaches both
        burst = [socket.create_connection(("127.0.0.1", server.port), 10) for _ in range(32)]
        try:
            deadline = time.monotonic() + 10
            while True:
                held = [len(sockets_of(pid, server.port, ESTABLISHED)) for pid in workers]
                if sum(held) == len(burst) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            for connection in burst:
                connection.close()
        assert sum(held) == len(burst), held
        assert min(held) > 0, held
    assert "Traceback" not in server.output, server.output


LISTENING, ESTABLISHED = "0A", "01"


def refused_serve(
    venv: Path, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``tecnorev serve`` on a SQLite file in ``cwd``, expected to stop at start-up; a free
    port unless ``args`` name one."""
    port = [] if "--port" in args else ["--port", str(free_port())]
    return subprocess.run(
        [str(venv / "bin" / "tecnorev"), "serve", *port, *args],
        env=child_env(f"sqlite:///{cwd / 'shop.db'}", env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def sockets_of(pid: int, port: int, state: str) -> set[str]:
    """The TCP sockets on local ``port`` in ``state`` that process ``pid`` holds open."""
    wanted = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            wanted.add(f"socket:[{fields[9]}]")
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target in wanted:
            held.add(target)
    return held


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_exits_with_a_message(venv, tmp_path, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = refused_serve(venv, tmp_path, "--port", str(port), "--workers", workers)
    assert result.returncode == 3  # what the settings point to cannot be used
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("secret_key", ["", "secret"], ids=["missing", "weak"])
def test_production_with_a_weak_secret_key_exits_with_a_message(venv, tmp_path, secret_key):
    result = refused_serve(venv, tmp_path, TECNOREV_ENV="production", SECRET_KEY=secret_key)
    assert result.returncode != 0
    assert result.stderr.startswith("error: SECRET_KEY "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_production_with_pending_migrations_exits_before_starting_workers(venv, tmp_path):
    key = secrets.token_urlsafe(48)
    result = refused_serve(
        venv, tmp_path, "--workers", "2", TECNOREV_ENV="production", SECRET_KEY=key
    )
    assert result.returncode != 0
    assert result.stderr.startswith(
        "error: refusing to serve: migrations pending for auth, core, catalog"
    )
    assert "tecnorev db upgrade heads" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "Started server process" not in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["TECNOREV_DB_POOL_SIZE", "TECNOREV_READ_THREADS"])
def test_a_bad_worker_setting_stops_the_server_before_any_worker_starts(venv, tmp_path, name):
    # in a worker, the supervisor would restart it over and over instead
    result = refused_serve(venv, tmp_path, "--workers", "2", **{name: "0"})
    assert result.returncode == 3
    assert result.stderr.startswith(f"error: {name}='0' must be a whole number"), result.stderr
    assert "Started server process" not in result.stdout + result.stderr
