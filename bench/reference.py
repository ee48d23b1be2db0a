"""The reference next to ``bench_api.py``'s listings: fastapi/full-stack-fastapi-template's
50-item list, ``GET /api/v1/items/?limit=50`` as its superuser, served by the template's own
backend from a local checkout (the environment variable ``TECNOREV_BENCH_TEMPLATE`` names it;
nothing is downloaded from its repository).

What ``Template`` does, the way the template's ``backend/scripts/prestart.sh`` and its
``.env`` describe a local run:

* installs ``backend/`` (``pip install -e``) into a virtual environment of its own under the
  system's temporary folder, kept there for the next run and rebuilt when the checkout's
  ``pyproject.toml`` or the Python changes; the Python is the first one found that the
  template's ``requires-python`` accepts (``TECNOREV_BENCH_TEMPLATE_PYTHON`` chooses one);
* points the backend at a throwaway PostgreSQL database the caller made (settings of both
  the ``POSTGRES_*`` and the ``DATABASE_URL`` generations of the template), runs its Alembic
  migrations and ``app/initial_data.py`` (the first superuser);
* starts ``uvicorn app.main:app`` with one worker, logs the superuser in through
  ``/api/v1/login/access-token`` and creates ``ITEMS`` items through ``POST /api/v1/items/``.

The caller measures it with the same load generator, clients and duration as Tecno Rev.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ENV = "TECNOREV_BENCH_TEMPLATE"
PYTHON_ENV = "TECNOREV_BENCH_TEMPLATE_PYTHON"
NOT_MEASURED = (
    "reference: not measured (set TECNOREV_BENCH_TEMPLATE to a checkout of "
    "full-stack-fastapi-template)"
)
ITEMS = 100  # the superuser's items: two full pages
PAGE_PATH = "/api/v1/items/?limit=50"
SUPERUSER = "admin@example.com"


def checkout() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser() if value else None


def backend_of(root: Path) -> Path:
    """The template's backend folder: ``backend/`` of a checkout (or the folder itself)."""
    for candidate in (root / "backend", root):
        if (candidate / "app" / "main.py").is_file() and (candidate / "pyproject.toml").is_file():
            return candidate
    raise RuntimeError(f"{root} is not a checkout of full-stack-fastapi-template (no backend/app)")


def commit_of(root: Path) -> str:
    found = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short=8", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() if found.returncode == 0 else "unknown commit"


def _version(python: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return found.stdout.strip()
    return None


def _accepts(requirement: str, version: str) -> bool:
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:  # the lower bounds only: ">=3.10,<4.0"
        wanted = re.findall(r">=\s*(\d+)\.(\d+)", requirement)
        have = tuple(int(part) for part in version.split(".")[:2])
        return all(have >= (int(a), int(b)) for a, b in wanted)
    return SpecifierSet(requirement).contains(version, prereleases=True)


def pick_python(requirement: str) -> tuple[str, str]:
    """(interpreter, version): ``TECNOREV_BENCH_TEMPLATE_PYTHON``, else the newest Python on
    the PATH (or under pyenv) that ``requirement`` accepts."""
    explicit = os.environ.get(PYTHON_ENV, "").strip()
    if explicit:
        version = _version(explicit)
        if version is None:
            raise RuntimeError(f"{PYTHON_ENV}={explicit} does not run")
        return explicit, version
    candidates = [shutil.which(f"python3.{minor}") for minor in range(20, 8, -1)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / "python3") for p in sorted(pyenv.iterdir(), reverse=True)]
    candidates.append(getattr(sys, "_base_executable", sys.executable))
    seen: list[tuple[tuple[int, ...], str, str]] = []
    for python in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        version = _version(python)
        if version and _accepts(requirement, version):
            seen.append((tuple(int(p) for p in version.split(".")), python, version))
    if not seen:
        raise RuntimeError(
            f"no Python here satisfies the template's requires-python {requirement!r}; "
            f"set {PYTHON_ENV} to one that does"
        )
    _, python, version = max(seen)
    return python, version


def ensure_venv(backend: Path) -> tuple[Path, str]:
    """The template's own virtual environment (made once, then reused) and its Python version."""
    pyproject = backend / "pyproject.toml"
    requirement = tomllib.loads(pyproject.read_text())["project"].get("requires-python", "")
    python, version = pick_python(requirement)
    digest = hashlib.sha256(
        f"{backend.resolve()}\n{python}\n{version}\n".encode() + pyproject.read_bytes()
    ).hexdigest()[:12]
    venv = Path(tempfile.gettempdir()) / f"tecnorev-bench-template-{digest}"
    marker = venv / ".installed"
    if marker.exists():
        return venv, version
    shutil.rmtree(venv, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
    install = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-e", str(backend)]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(f"installing the template failed:\n{done.stderr[-3000:]}")
    marker.write_text(version)
    print(
        f"  installed the template's backend into {venv} (Python {version}) in "
        f"{time.perf_counter() - started:.0f} s"
    )
    return venv, version


def settings(database_url: str, password: str) -> dict[str, str]:
    """The backend's settings: both generations of the template's names (``POSTGRES_*`` and
    ``ENVIRONMENT``; ``DATABASE_URL`` and ``FASTAPI_ENV``), each ignoring the other's."""
    parts = urllib.parse.urlsplit(database_url)
    db_password = parts.password or "unused-with-trust-authentication"
    host, port = parts.hostname or "127.0.0.1", str(parts.port or 5432)
    user, database = parts.username or "postgres", parts.path.lstrip("/")
    return {
        "PROJECT_NAME": "Full Stack FastAPI Project",
        "ENVIRONMENT": "local",
        "FASTAPI_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(32),
        "FIRST_SUPERUSER": SUPERUSER,
        "FIRST_SUPERUSER_PASSWORD": password,
        "POSTGRES_SERVER": host,
        "POSTGRES_PORT": port,
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": db_password,
        "POSTGRES_DB": database,
        "DATABASE_URL": f"postgresql://{user}:{db_password}@{host}:{port}/{database}",
        "SENTRY_DSN": "",
        "SMTP_HOST": "",
    }


class Template:
    """The template's backend on ``port``, against ``database_url``; a context manager."""

    def __init__(self, root: Path, database_url: str, port: int, log: Path) -> None:
        self.root = root
        self.backend = backend_of(root)
        self.commit = commit_of(root)
        self.database_url = database_url
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log = log
        self.password = secrets.token_urlsafe(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.python = ""
        self.started_in = 0.0

    def _env(self, venv: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
        }
        env.update(settings(self.database_url, self.password))
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
        return env

    def _run(self, env: dict[str, str], *command: str) -> None:
        done = subprocess.run(
            command, cwd=self.backend, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"the template's {' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )

    def __enter__(self) -> Template:
        venv, self.python = ensure_venv(self.backend)
        env = self._env(venv)
        python = str(venv / "bin" / "python")
        # prestart.sh without its first step, which waits up to 5 minutes for a database
        # that this run has just created
        self._run(env, python, "-m", "alembic", "upgrade", "head")
        self._run(env, python, "app/initial_data.py")
        command = [
            python, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--workers", "1", "--log-level", "warning",
        ]  # fmt: skip
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.backend, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self._wait_ready()
        self.started_in = time.perf_counter() - started
        self.token = self._login()
        for i in range(ITEMS):
            self._call(
                "POST",
                "/api/v1/items/",
                json.dumps({"title": f"Item {i}", "description": "A benchmark item."}).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                log = self.log.read_text()[-3000:]
                raise RuntimeError(f"the template stopped; its log:\n{log}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v1/openapi.json", timeout=5):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"the template did not answer within {timeout:.0f} s")

    def _call(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
        request = urllib.request.Request(
            self.base_url + path, data=body, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(
                f"the template answered {method} {path} with {exc.code}: {exc.read()[:500]!r}"
            ) from exc

    def _login(self) -> str:
        form = urllib.parse.urlencode({"username": SUPERUSER, "password": self.password})
        answer = self._call(
            "POST",
            "/api/v1/login/access-token",
            form.encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        return str(json.loads(answer)["access_token"])

    def check_page(self) -> int:
        """The items on the page measured (the template counts them too)."""
        answer = self._call("GET", PAGE_PATH, None, {"Authorization": f"Bearer {self.token}"})
        return len(json.loads(answer)["data"])

    def __exit__(self, *_exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
