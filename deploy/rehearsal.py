#!/usr/bin/env python3
"""The rolling-deploy rehearsal: two releases of Tecno Rev on one PostgreSQL database, replicas
restarted one by one behind HAProxy by ``deploy/deploy.py``, under constant reads and writes.

Today's release is this repository's code (catalog at the version its
``packages/catalog/pyproject.toml`` says); the next one, catalog 0.1.2, changes catalog (its
code by ``deploy/rehearsal/catalog-0.1.2.patch``, its revisions and release record in
``deploy/rehearsal/catalog-0.1.2``): the ``product.description`` column becomes ``details``,
``name`` becomes ``text`` (its indexes built again on the new column) and a new ``unit`` column
becomes NOT NULL, in two expand revisions and a contract revision.  A run:

1. makes a throwaway database, migrated by today's release, with the demo data and an
   administrator;
2. starts two replicas of today's release (``tecnorev serve``) behind HAProxy, which checks
   ``/ready``;
3. sends reads and writes through HAProxy, and probes an unrelated query on ``product`` on a
   connection of its own with ``lock_timeout`` equal to the migrations' own;
4. runs ``deploy.py all`` with 0.1.2's ``tecnorev``: expand, gate, one ``--restart`` per replica
   (``restart-replica`` below: drain it in HAProxy, stop it, start 0.1.2 on its port, wait for
   ``/ready`` and for HAProxy to see it UP), contract;
5. keeps the load a few seconds more, then reads every product written during the window back
   through 0.1.2.

It passes with 0 failed requests, 0 lost writes and no probe held as long as ``lock_timeout``.
Then the same with the naive migration (``deploy/rehearsal/naive``: one revision renaming,
retyping and adding the column at once), which must make today's replicas fail: a rehearsal
that cannot fail proves nothing.  The exit status is 0 only when both hold.

    rehearsal.py build-variant zero|naive --hatch HATCH --out DIR   # a catalog 0.1.2 wheel
    rehearsal.py run --new-venv VENV --naive-wheel WHEEL [--work DIR]
    rehearsal.py restart-replica --state FILE --index N             # what deploy.py runs

``nox -s rehearsal`` builds both wheels and 0.1.2's venv, and runs it; today's release is the
Python running ``run`` (its ``tecnorev``).  Standard library, plus psycopg2 for the probe.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = Path(__file__).resolve().parent / "rehearsal"
CATALOG = ROOT / "packages" / "catalog"
# today's release: the version of catalog this repository builds (the other packages are the
# same in both releases)
TODAY_VERSION = tomllib.loads((CATALOG / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "version"
]
VARIANT_VERSION = "0.1.2"  # the next one: today's catalog with the overlay
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "rehearsal-admin-2026"
LOCK_TIMEOUT = "3s"  # the migrations' (TECNOREV_LOCK_TIMEOUT), and the probe's
LOCK_TIMEOUT_SECONDS = 3.0
BACKEND = "replicas"
API = "/api/v1/catalog"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
HTTP_TIMEOUT = 10.0
DEPLOY_TIMEOUT = 240.0


def say(message: str) -> None:
    print(f"rehearsal: {message}", flush=True)


class RehearsalError(Exception):
    """The rehearsal could not run (as opposed to: it ran and found failures)."""


# --------------------------------------------------------------------------- building the next one


def build_variant(variant: str, hatch: str, out: Path) -> Path:
    """A tecnorev-catalog VARIANT_VERSION wheel: packages/catalog with the overlay applied.
    ``naive`` is its code with the single naive revision instead of the expand and contract
    ones."""
    check_overlay()
    with tempfile.TemporaryDirectory(prefix="tecnorev-catalog-variant-") as tmp:
        source = Path(tmp) / "catalog"
        shutil.copytree(CATALOG, source, ignore=_build_junk)
        zero = OVERLAYS / f"catalog-{VARIANT_VERSION}"
        # the code change as a reviewable diff; the new revisions and release record as files
        patch = OVERLAYS / f"catalog-{VARIANT_VERSION}.patch"
        _build_step(["git", "apply", str(patch)], source, 60, f"{patch} no longer applies")
        shutil.copytree(zero, source, dirs_exist_ok=True)
        if variant == "naive":
            for revision in (zero / "src" / "tecnorev" / "catalog" / "migrations").glob("*.py"):
                (source / revision.relative_to(zero)).unlink()
            shutil.copytree(OVERLAYS / "naive", source, dirs_exist_ok=True)
        pyproject = source / "pyproject.toml"
        text, count = re.subn(
            r'(?m)^version = ".*"$', f'version = "{VARIANT_VERSION}"', pyproject.read_text()
        )
        if count != 1:
            raise RehearsalError("no version line in packages/catalog/pyproject.toml")
        pyproject.write_text(text)
        out = out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        _build_step([_command(hatch), "build", "-t", "wheel", str(out)], source, 300, "")
    (wheel,) = out.glob(f"tecnorev_catalog-{VARIANT_VERSION}-*.whl")
    return wheel


def _build_step(command: list[str], cwd: Path, timeout: float, what: str) -> None:
    """A step of the build; its own output only when it fails (then as the error)."""
    result = subprocess.run(command, cwd=cwd, timeout=timeout, capture_output=True, text=True)
    if result.returncode != 0:
        what = what or f"{' '.join(command)} exited {result.returncode}"
        raise RehearsalError(f"{what}:\n{result.stderr or result.stdout}")


def check_overlay() -> None:
    """The overlay still fits today's catalog: the next version is later than today's, and
    each release record it carries keeps every release that catalog records today."""
    if _release_key(VARIANT_VERSION) <= _release_key(TODAY_VERSION):
        raise RehearsalError(
            f"catalog is {TODAY_VERSION} today, so the rehearsal's next release "
            f"(VARIANT_VERSION, {VARIANT_VERSION}) must be later: move the overlay on"
        )
    releases = Path("src", "tecnorev", "catalog", "migrations", "releases.toml")
    today = tomllib.loads((CATALOG / releases).read_text(encoding="utf-8"))["release"]
    for overlay in (OVERLAYS / f"catalog-{VARIANT_VERSION}", OVERLAYS / "naive"):
        record = tomllib.loads((overlay / releases).read_text(encoding="utf-8"))["release"]
        changed = sorted(v for v, entry in today.items() if record.get(v) != entry)
        if changed or VARIANT_VERSION not in record:
            raise RehearsalError(
                f"{overlay / releases} must be catalog's releases.toml of today plus release "
                f"{VARIANT_VERSION}; it differs on {', '.join(changed) or VARIANT_VERSION}"
            )


def _release_key(version: str) -> tuple[int, ...]:
    """0.1.2 -> (0, 1, 2): enough for the plain versions this repository releases."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def haproxy_binary() -> str:
    """Debian installs it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    if found is None:
        raise RehearsalError("haproxy is not installed (Debian: apt-get install haproxy)")
    return found


def _command(name: str) -> str:
    """A command as an absolute path: the build runs in another directory."""
    return str(Path(name).resolve()) if os.sep in name else shutil.which(name) or name


def _build_junk(_directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in ("__pycache__", "build", "dist", ".pytest_cache")}


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie, not yet reaped by its parent, has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_process_group(pid: int, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the group, then SIGKILL past ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        if sig == signal.SIGTERM:
            say(f"process {pid} ignored SIGTERM for {timeout:g}s: killing it")
    raise RehearsalError(f"process {pid} survived SIGKILL")


@dataclass
class Replica:
    name: str  # its HAProxy server name
    port: int
    pidfile: Path
    log: Path

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ready"

    def pid(self) -> int:
        return int(self.pidfile.read_text())


def start_replica(replica: Replica, tecnorev: str, env: dict[str, str]) -> subprocess.Popen:
    """``tecnorev serve`` on the replica's port, once it answers /ready."""
    process = spawn_replica(replica, tecnorev, env)
    wait_ready(replica, process)
    return process


def spawn_replica(replica: Replica, tecnorev: str, env: dict[str, str]) -> subprocess.Popen:
    """``tecnorev serve`` in a session of its own: it outlives the restart helper that
    started it, and its process group is stopped whole."""
    with replica.log.open("a") as out:
        process = subprocess.Popen(
            [tecnorev, "serve", "--port", str(replica.port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    replica.pidfile.write_text(str(process.pid))
    return process


def wait_ready(replica: Replica, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RehearsalError(
                f"{replica.name} exited {process.returncode}:\n{replica.log.read_text()[-3000:]}"
            )
        if http_status(replica.ready_url) == 200:
            return
        time.sleep(0.2)
    stop_process_group(process.pid)
    raise RehearsalError(f"{replica.name} was not ready in {START_TIMEOUT:g}s")


# --------------------------------------------------------------------------- HAProxy


def haproxy_config(port: int, sock: Path, replicas: Sequence[Replica]) -> str:
    servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
    # retries + redispatch + retry-on: a request whose connection fails, or that gets no answer
    # at all from a replica going away, is sent again (to the other one).  The checks ask
    # /ready, so a replica that cannot serve its release is taken out.
    return f"""global
    maxconn 512
    stats socket {sock} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout queue 10s
    retries 3
    option redispatch
    retry-on conn-failure empty-response

frontend api
    bind 127.0.0.1:{port}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option httpchk
    http-check send meth GET uri /ready
    http-check expect status 200
    default-server inter 300ms fastinter 200ms downinter 300ms rise 1 fall 2
    # which replica answered: the client tells the releases apart by it
    http-response set-header X-Served-By %s
{servers}
"""


def haproxy_command(sock: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(sock))
        client.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def server_stats(sock: Path) -> dict[str, dict[str, str]]:
    """HAProxy's `show stat` rows of the backend's servers, by server name."""
    text = haproxy_command(sock, "show stat").lstrip("# ")
    rows = csv.DictReader(line for line in text.splitlines() if line)
    return {
        row["svname"]: row
        for row in rows
        if row["pxname"] == BACKEND and row["svname"] not in ("BACKEND", "FRONTEND")
    }


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(check):
        if time.monotonic() > deadline:
            raise RehearsalError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:  # HAProxy's socket not listening yet
        return False


def set_state(sock: Path, server: str, state: str) -> None:
    answer = haproxy_command(sock, f"set server {BACKEND}/{server} state {state}").strip()
    if answer:
        raise RehearsalError(f"HAProxy refused 'state {state}' for {server}: {answer}")


def is_up(sock: Path, server: str) -> bool:
    row = server_stats(sock)[server]
    return row["status"] == "UP" and row["weight"] not in ("", "0")


# --------------------------------------------------------------------------- restart-replica


def restart_replica(state_file: Path, index: int) -> None:
    """One replica to the new release without a failed request: out of HAProxy's rotation,
    its requests finished, stopped (SIGTERM: it withdraws its replica report), the new release
    started on its port, back in rotation once it is ready and HAProxy's check sees it UP."""
    state = json.loads(state_file.read_text())
    sock = Path(state["socket"])
    fields = state["replicas"][index - 1]
    replica = Replica(fields["name"], fields["port"], Path(fields["pidfile"]), Path(fields["log"]))
    began = time.monotonic()
    set_state(sock, replica.name, "drain")
    wait_for(
        f"{replica.name}'s requests to finish",
        lambda: int(server_stats(sock)[replica.name]["scur"] or 0) == 0,
        30,
    )
    stop_process_group(replica.pid())
    Path(state["switched"][index - 1]).write_text(repr(time.time()))
    start_replica(replica, state["new_tecnorev"], state["env"])
    set_state(sock, replica.name, "ready")
    wait_for(f"HAProxy to see {replica.name} UP", lambda: is_up(sock, replica.name), 30)
    say(f"{replica.name} now runs the new release ({time.monotonic() - began:.1f}s)")


# --------------------------------------------------------------------------- the load


@dataclass
class Request:
    kind: str  # "list", "read", "create", "update", "readback"
    phase: str
    server: str
    at: float  # time.time() when the answer came
    ok: bool
    detail: str = ""


@dataclass
class Written:
    """What the client last had acknowledged for one product, and what an unacknowledged
    write may have left instead."""

    name: str
    description: str
    phase: str
    server: str
    at: float
    maybe: list[tuple[str, str]] = field(default_factory=list)


class Load:
    """Client threads through the load balancer: readers (the product list, products by id) and
    writers (each creates products, changes its own, and reads each write back at once)."""

    def __init__(self, base_port: int, token: str, demo_ids: list[int]) -> None:
        self.port = base_port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.demo_ids = demo_ids
        self.phase = "before"
        self.requests: list[Request] = []
        self.written: dict[int, Written] = {}
        self.mismatches: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._run = uuid.uuid4().hex[:6]

    def start(self, readers: int = 2, writers: int = 2) -> None:
        for number in range(readers):
            self._spawn(self._reader, f"reader-{number}", number)
        for number in range(writers):
            self._spawn(self._writer, f"writer-{number}", number)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(HTTP_TIMEOUT * 3)
            if thread.is_alive():
                raise RehearsalError(f"load thread {thread.name} did not stop")

    def _spawn(self, target: Callable[[int], None], name: str, number: int) -> None:
        thread = threading.Thread(target=target, args=(number,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    @contextmanager
    def _connection(self) -> Iterator[list[http.client.HTTPConnection]]:
        holder = [http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)]
        try:
            yield holder
        finally:
            holder[0].close()

    def send(
        self,
        holder: list[http.client.HTTPConnection],
        kind: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
    ) -> tuple[Request, Any]:
        """One request on the thread's kept-alive connection (a new one after an error)."""
        phase = self.phase
        payload = json.dumps(body).encode() if body is not None else None
        try:
            holder[0].request(method, path, body=payload, headers=self.headers)
            response = holder[0].getresponse()
            data = response.read()
            server = response.getheader("X-Served-By") or "?"
            ok = 200 <= response.status < 300
            detail = "" if ok else f"{response.status} {data[:300].decode(errors='replace')}"
            parsed = json.loads(data) if ok and data else None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            holder[0].close()
            holder[0] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
            server, ok, detail, parsed = "?", False, f"{type(exc).__name__}: {exc}", None
        record = Request(kind, phase, server, time.time(), ok, f"{method} {path}: {detail}")
        with self._lock:
            self.requests.append(record)
        return record, parsed

    def _reader(self, number: int) -> None:
        rng = random.Random(number)
        with self._connection() as holder:
            while not self._stop.is_set():
                if rng.random() < 0.4:
                    self.send(holder, "list", "GET", f"{API}/products?limit=20")
                else:
                    with self._lock:
                        ids = self.demo_ids + list(self.written)
                    self.send(holder, "read", "GET", f"{API}/products/{rng.choice(ids)}")
                self._stop.wait(0.03)

    def _writer(self, number: int) -> None:
        rng = random.Random(100 + number)
        mine: list[int] = []
        sequence = 0
        with self._connection() as holder:
            while not self._stop.is_set():
                sequence += 1
                # non-ASCII and quotes: the copies between columns must keep every character
                name = f"Rehearsal {self._run}-{number}-{sequence} «Ñandú» 'x'"
                description = f"written as #{sequence} by writer {number} ({self.phase})"
                if not mine or rng.random() < 0.5:
                    body = {
                        "sku": f"RH-{self._run}-{number}-{sequence}",
                        "name": name,
                        "description": description,
                        "price": f"{rng.randint(100, 99999) / 100:.2f}",
                    }
                    request, created = self.send(holder, "create", "POST", f"{API}/products", body)
                    if created is not None:
                        product_id = created["id"]
                        mine.append(product_id)
                        self._record(product_id, name, description, request)
                    self._stop.wait(0.05)
                    continue
                product_id = rng.choice(mine)
                body = {"name": name, "description": description}
                request, _ = self.send(
                    holder, "update", "PATCH", f"{API}/products/{product_id}", body
                )
                if request.ok:
                    self._record(product_id, name, description, request)
                else:
                    with self._lock:
                        self.written[product_id].maybe.append((name, description))
                # read your write at once, through whichever replica (release) answers
                check, product = self.send(
                    holder, "readback", "GET", f"{API}/products/{product_id}"
                )
                if product is not None:
                    self._compare(product_id, product, f"read back by {check.server}")
                self._stop.wait(0.05)

    def _record(self, product_id: int, name: str, description: str, request: Request) -> None:
        with self._lock:
            self.written[product_id] = Written(
                name, description, request.phase, request.server, request.at
            )

    def _compare(self, product_id: int, product: dict[str, Any], how: str) -> bool:
        with self._lock:
            expected = self.written[product_id]
        seen = (product.get("name"), product.get("description"))
        if seen == (expected.name, expected.description) or seen in expected.maybe:
            return True
        with self._lock:
            self.mismatches.append(
                f"product {product_id} {how}: {seen!r}, expected "
                f"{(expected.name, expected.description)!r}"
            )
        return False


class Probe:
    """An unrelated query on ``product`` every 50 ms, on a connection of its own, with the
    migrations' lock_timeout: its longest wait is the longest any query waited on a lock."""

    def __init__(self, dsn: str, product_id: int) -> None:
        self.dsn = dsn
        self.product_id = product_id
        self.count = 0
        self.longest = 0.0
        self.longest_phase = ""
        self.errors: list[str] = []
        self.load: Load | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self, load: Load) -> None:
        self.load = load
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(LOCK_TIMEOUT_SECONDS * 5)
        if self._thread.is_alive():
            raise RehearsalError("the lock probe did not stop")

    def _run(self) -> None:
        import psycopg2

        try:
            connection = psycopg2.connect(self.dsn, connect_timeout=5)
        except psycopg2.Error as exc:
            self.errors.append(f"cannot connect: {exc}")
            return
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = %s", (LOCK_TIMEOUT,))
                cursor.execute("SET application_name = 'rehearsal-probe'")
                while not self._stop.is_set():
                    started = time.monotonic()
                    try:
                        cursor.execute(
                            "SELECT id, sku FROM product WHERE id = %s", (self.product_id,)
                        )
                        cursor.fetchall()
                        cursor.execute(
                            "UPDATE product SET is_active = is_active WHERE id = %s",
                            (self.product_id,),
                        )
                    except psycopg2.Error as exc:
                        self.errors.append(f"{exc.pgcode}: {str(exc).strip().splitlines()[0]}")
                    elapsed = time.monotonic() - started
                    self.count += 1
                    if elapsed > self.longest:
                        self.longest = elapsed
                        self.longest_phase = self.load.phase if self.load else ""
                    self._stop.wait(0.05)
        finally:
            connection.close()


# --------------------------------------------------------------------------- one run


@dataclass
class Outcome:
    kind: str
    requests: list[Request]
    failures: list[Request]
    mismatches: list[str]
    lost: list[str]
    verified: Counter
    probe: Probe
    steps: dict[str, float]
    releases: dict[str, str]  # server -> when it switched to the new release
    deploy_status: int
    causes: Counter  # the database errors in the replicas' logs

    @property
    def passed(self) -> bool:
        return (
            self.deploy_status == 0
            and sum(self.verified.values()) > 0  # it did write, and read back
            and self.probe.count > 0
            and not self.failures
            and not self.mismatches
            and not self.lost
            and not self.probe.errors
            and self.probe.longest < LOCK_TIMEOUT_SECONDS
        )


def libpq(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg2://...) as libpq's."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(scheme="postgresql").geturl()


def with_database(url: str, database: str) -> str:
    return urllib.parse.urlsplit(url)._replace(path=f"/{database}").geturl()


@contextmanager
def throwaway_database(admin_url: str, template: str | None = None) -> Iterator[str]:
    """A new database (a copy of ``template``'s, if given: same rows, same ids) dropped after."""
    import psycopg2

    name = f"tecnorev_rehearsal_{uuid.uuid4().hex[:10]}"

    def admin(statement: str) -> None:
        connection = psycopg2.connect(libpq(admin_url), connect_timeout=5)
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    copy = f' TEMPLATE "{urllib.parse.urlsplit(template).path[1:]}"' if template else ""
    admin(f'CREATE DATABASE "{name}"{copy}')
    try:
        yield with_database(admin_url, name)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service_env(url: str) -> dict[str, str]:
    """The environment of every tecnorev command: this database, the defaults otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TECNOREV_")}
    env.pop("PYTHONPATH", None)
    env.update(
        DATABASE_URL=url,
        SECRET_KEY="rehearsal-signing-key-" + "x" * 32,  # tokens valid on both releases
        TECNOREV_LOCK_TIMEOUT=LOCK_TIMEOUT,
        TECNOREV_REPLICA_REPORT_INTERVAL="1s",
        # a few connections per replica: the server is shared with other work
        TECNOREV_DB_POOL_SIZE="4",
        TECNOREV_LOG_LEVEL="warning",
    )
    return env


def run_command(command: Sequence[str], env: dict[str, str], timeout: float = 180) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RehearsalError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")


def login(port: int) -> str:
    data = urllib.parse.urlencode({"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/auth/token", data=data)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def demo_products(dsn: str) -> list[int]:
    import psycopg2

    connection = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM product ORDER BY id")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def prepare(url: str, old_bin: Path) -> None:
    """Today's schema, the demo data and an administrator."""
    env = service_env(url)
    old = str(old_bin / "tecnorev")
    run_command([old, "db", "upgrade", "heads"], env)
    run_command(
        [old, "users", "create-admin", "--email", ADMIN_EMAIL],
        {**env, "TECNOREV_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    run_command([old, "demo", "load"], env)


def rehearse(kind: str, old_bin: Path, new_bin: Path, url: str, work: Path) -> Outcome:
    """One rolling deploy from today's release to the next one on the prepared database at
    ``url``."""
    say(f"--- the {kind} rehearsal ---")
    steps: dict[str, float] = {}
    mark = time.monotonic()
    run_dir = work / kind
    run_dir.mkdir(parents=True, exist_ok=True)
    processes: list[subprocess.Popen] = []
    replicas: list[Replica] = []
    haproxy: subprocess.Popen | None = None
    load: Load | None = None
    probe: Probe | None = None
    env = service_env(url)
    old = str(old_bin / "tecnorev")
    try:
        for number in (1, 2):
            port = free_port()
            replica = Replica(
                f"r{number}",
                port,
                run_dir / f"r{number}.pid",
                run_dir / f"r{number}.log",
            )
            replicas.append(replica)
            processes.append(spawn_replica(replica, old, env))
        for replica, process in zip(replicas, processes, strict=True):
            wait_ready(replica, process)
        sock = run_dir / "haproxy.sock"
        lb_port = free_port()
        config = run_dir / "haproxy.cfg"
        config.write_text(haproxy_config(lb_port, sock, replicas))
        with (run_dir / "haproxy.log").open("w") as haproxy_log:
            haproxy = subprocess.Popen(
                [haproxy_binary(), "-db", "-f", str(config)],
                stdout=haproxy_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for("HAProxy's socket", sock.exists, 10)
        wait_for(
            "HAProxy to see both replicas UP",
            lambda: all(is_up(sock, r.name) for r in replicas),
            20,
        )
        switched = [run_dir / f"{r.name}.switched" for r in replicas]
        state = {
            "socket": str(sock),
            "replicas": [
                {"name": r.name, "port": r.port, "pidfile": str(r.pidfile), "log": str(r.log)}
                for r in replicas
            ],
            "switched": [str(s) for s in switched],
            "new_tecnorev": str(new_bin / "tecnorev"),
            "env": env,
        }
        state_file = run_dir / "state.json"
        state_file.write_text(json.dumps(state))
        ids = demo_products(libpq(url))
        steps["start replicas"] = time.monotonic() - mark

        load = Load(lb_port, login(lb_port), ids)
        probe = Probe(libpq(url), ids[0])
        load.start()
        probe.start(load)
        mark = time.monotonic()
        time.sleep(2)  # the load starts before the expand
        steps["before"] = time.monotonic() - mark
        status = deploy(load, steps, new_bin, state_file, replicas, run_dir, env)
        mark = time.monotonic()
        load.phase = "after"
        time.sleep(3)
        load.stop()
        probe.stop()
        steps["after"] = time.monotonic() - mark
        mark = time.monotonic()
        # the next release reads the rows back only if the deploy got it serving
        lost, verified = verify(load, lb_port) if status == 0 else ([], Counter())
        steps["verify"] = time.monotonic() - mark
        causes = database_errors(r.log for r in replicas)
        releases = _releases(switched)
    finally:
        # an error above must not leave client threads running into the next rehearsal
        for running in (load, probe):
            if running is not None:
                running._stop.set()
        for replica in replicas:
            if replica.pidfile.exists():
                with suppress(RehearsalError):
                    stop_process_group(replica.pid())
        for process in processes:
            process.poll()  # reap
        if haproxy is not None:
            stop_haproxy(haproxy)
    assert load is not None and probe is not None
    requests = load.requests
    failures = [r for r in requests if not r.ok]
    return Outcome(
        kind,
        requests,
        failures,
        load.mismatches,
        lost,
        verified,
        probe,
        steps,
        releases,
        status,
        causes,
    )


def database_errors(logs: Iterable[Path]) -> Counter:
    """The database errors the replicas logged (what a 500 was), by message."""
    found: Counter = Counter()
    for log in logs:
        with suppress(OSError):
            for line in log.read_text(errors="replace").splitlines():
                match = re.search(r"psycopg2\.errors\.(\w+)\)? ?:? ?(.*)", line)
                if match:
                    found[f"{match.group(1)}: {match.group(2).strip()}"] += 1
    return found


def stop_haproxy(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGUSR1)  # soft stop: ends once its connections are done
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def deploy(
    load: Load,
    steps: dict[str, float],
    new_bin: Path,
    state_file: Path,
    replicas: Sequence[Replica],
    run_dir: Path,
    env: dict[str, str],
) -> int:
    """deploy.py all, with the new release's Python and tecnorev; its progress lines move the
    load's phase (expand, rollout, contract) and time each step."""
    command = [
        str(new_bin / "python"),
        str(ROOT / "deploy" / "deploy.py"),
        "all",
        "--backup-dir",
        str(run_dir / "backups"),
        "--health-timeout",
        "60",
    ]
    for index, replica in enumerate(replicas, start=1):
        restart = [sys.executable, str(Path(__file__).resolve()), "restart-replica"]
        restart += ["--state", str(state_file), "--index", str(index)]
        command += ["--restart", " ".join(restart), "--health-url", replica.ready_url]
    markers = {
        "db upgrade heads": "expand",
        "restarting replica 1 ": "rollout",
        "db contract": "contract",
    }
    mark = time.monotonic()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = threading.Timer(DEPLOY_TIMEOUT, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            print(f"    | {line.rstrip()}", flush=True)
            for marker, phase in markers.items():
                if line.startswith("deploy: ") and marker in line and load.phase != phase:
                    now = time.monotonic()
                    if load.phase != "before":
                        steps[load.phase] = now - mark
                    mark = now
                    load.phase = phase
        status = process.wait()
    finally:
        timer.cancel()
    steps[load.phase] = time.monotonic() - mark
    if status != 0:
        say(f"deploy.py exited {status}")
    return status


def verify(load: Load, port: int) -> tuple[list[str], Counter]:
    """Every product written during the window, read back through the new release: the last
    acknowledged name and description, and unit "each" (today's release never wrote one, nor
    does the API take one)."""
    lost: list[str] = []
    verified: Counter = Counter()
    with load._connection() as holder:
        for product_id, expected in sorted(load.written.items()):
            request, product = load.send(holder, "verify", "GET", f"{API}/products/{product_id}")
            if product is None:
                lost.append(f"product {product_id}: {request.detail}")
                continue
            if not load._compare(product_id, product, "at the end"):
                lost.append(load.mismatches.pop())
                continue
            if product.get("unit") != "each":
                lost.append(f"product {product_id}: unit {product.get('unit')!r}")
                continue
            verified[(expected.phase, expected.server, expected.at)] += 1
    return lost, verified


def _releases(switched: Sequence[Path]) -> dict[str, str]:
    """Server name -> the time it started the new release (repr of time.time())."""
    return {
        path.name.removesuffix(".switched"): path.read_text() for path in switched if path.exists()
    }


def release_of(outcome: Outcome, server: str, at: float) -> str:
    since = outcome.releases.get(server)
    if server == "?":
        return "?"
    return VARIANT_VERSION if since is not None and at >= float(since) else TODAY_VERSION


def report(outcome: Outcome) -> None:
    say(f"=== {outcome.kind} rehearsal: summary ===")
    say("steps: " + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in outcome.steps.items()))
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    order: list[str] = []
    for request in outcome.requests:
        if request.kind == "verify":
            continue
        if request.phase not in order:
            order.append(request.phase)
        release = release_of(outcome, request.server, request.at)
        table[(request.phase, release)]["ok" if request.ok else "failed"] += 1
    say("requests through HAProxy (phase, release that answered: ok / failed):")
    for phase in order:
        cells = [
            f"{release} {table[(phase, release)]['ok']}/{table[(phase, release)]['failed']}"
            for release in (TODAY_VERSION, VARIANT_VERSION, "?")
            if table[(phase, release)]
        ]
        say(f"  {phase:<9} " + "   ".join(cells))
    total = sum(1 for r in outcome.requests if r.kind != "verify")
    say(f"failed requests: {len(outcome.failures)} of {total}")
    for failure in outcome.failures[:12]:
        release = release_of(outcome, failure.server, failure.at)
        say(f"  [{failure.phase}, {failure.kind}, {failure.server} {release}] {failure.detail}")
    if len(outcome.failures) > 12:
        kinds = Counter((f.phase, f.kind) for f in outcome.failures)
        say(f"  ... {len(outcome.failures) - 12} more; by phase and kind: {dict(kinds)}")
    for mismatch in outcome.mismatches[:5]:
        say(f"  stale read: {mismatch}")
    by_release: Counter = Counter()
    for (_phase, server, at), count in outcome.verified.items():
        by_release[release_of(outcome, server, at)] += count
    written = sum(outcome.verified.values()) + len(outcome.lost)
    if outcome.deploy_status != 0:
        say(f"writes: not read back: the deploy failed before {VARIANT_VERSION} served")
    else:
        say(
            f"writes: {written} products written during the window, "
            f"{sum(outcome.verified.values())} read back correctly by {VARIANT_VERSION} "
            f"(last write by {dict(by_release)}), {len(outcome.lost)} lost"
        )
    for lost in outcome.lost[:5]:
        say(f"  lost: {lost}")
    probe = outcome.probe
    say(
        f"lock probe: {probe.count} queries, longest {probe.longest * 1000:.0f} ms "
        f"(during {probe.longest_phase or '-'}), lock_timeout {LOCK_TIMEOUT}, "
        f"{len(probe.errors)} errors"
    )
    for error in probe.errors[:5]:
        say(f"  probe error: {error}")
    if outcome.causes:
        say("database errors in the replicas' logs (lines):")
        for cause, count in outcome.causes.most_common(5):
            say(f"  {count} x {cause}")
    say(f"deploy.py exit status: {outcome.deploy_status}")


def run(options: argparse.Namespace) -> int:
    old_bin = Path(sys.executable).parent
    new_venv = Path(options.new_venv)
    new_bin = new_venv / "bin"
    work = Path(options.work or tempfile.mkdtemp(prefix="tecnorev-rehearsal-"))
    admin_url = options.admin_url
    haproxy_binary()  # before anything is created
    started = time.monotonic()
    naive = None
    with ExitStack() as databases:
        zero_url = databases.enter_context(throwaway_database(admin_url))
        prepare(zero_url, old_bin)
        # the naive run starts from a copy: the same data, without loading it twice
        naive_url = databases.enter_context(throwaway_database(admin_url, template=zero_url))
        say(f"databases prepared ({time.monotonic() - started:.1f}s)")
        zero = rehearse("zero-downtime", old_bin, new_bin, zero_url, work)
        report(zero)
        if options.naive_wheel:
            say(f"installing the naive migration's catalog into {new_venv}")
            pip = [str(new_bin / "python"), "-m", "pip", "install", "-q", "--isolated"]
            pip += ["--no-index", "--no-deps", "--force-reinstall", options.naive_wheel]
            run_command(pip, os.environ.copy())
            naive = rehearse("naive", old_bin, new_bin, naive_url, work)
            report(naive)
    say(f"=== result ({time.monotonic() - started:.0f}s) ===")
    ok = True
    if zero.passed:
        say("zero-downtime: PASS (0 failed requests, 0 lost writes, probe below lock_timeout)")
    else:
        say("zero-downtime: FAIL")
        ok = False
    if naive is not None:
        if naive.failures:
            say(f"naive: failed as it must ({len(naive.failures)} failed requests)")
        else:
            say("naive: FAIL: no failed request, so this rehearsal could not catch one")
            ok = False
    return 0 if ok else 1


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rehearsal.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build-variant", help=f"build a catalog {VARIANT_VERSION} wheel (the next release)"
    )
    build.add_argument("variant", choices=("zero", "naive"))
    build.add_argument("--hatch", required=True, help="the hatch command")
    build.add_argument("--out", required=True, help="directory for the wheel")
    rehearsal = commands.add_parser("run", help="the rehearsal, then the naive one")
    rehearsal.add_argument(
        "--new-venv", required=True, help=f"a venv holding the next release ({VARIANT_VERSION})"
    )
    rehearsal.add_argument(
        "--naive-wheel", help="the naive catalog wheel (installed into --new-venv afterwards)"
    )
    rehearsal.add_argument("--work", help="where logs and configs go (default: a temp dir)")
    rehearsal.add_argument(
        "--admin-url",
        default=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="a PostgreSQL server to make the throwaway databases on (TEST_DATABASE_URL)",
    )
    restart = commands.add_parser("restart-replica", help="deploy.py's --restart command")
    restart.add_argument("--state", required=True)
    restart.add_argument("--index", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    try:
        if options.command == "build-variant":
            print(build_variant(options.variant, options.hatch, Path(options.out)))
            return 0
        if options.command == "restart-replica":
            restart_replica(Path(options.state), options.index)
            return 0
        return run(options)
    except RehearsalError as exc:
        say(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
