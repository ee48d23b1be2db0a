"""The steps of ``python3 dev.py run`` (``nox -s run``) inside the run environment: the settings
and the port, the migrations, the demo admin and data; then this process becomes ``tecnorev
serve``.  One process for every step before serving, so the product is imported once.

    .nox/run/bin/python tools/quickstart.py [--fresh] [SERVE OPTIONS...]

``--fresh`` starts over with a new SQLite database (its demo data loaded again, a new admin
password printed).  Exit codes are the ``tecnorev`` command's (docs/cli.md): 3 for a bad
setting or a port taken, 2 for ``--fresh`` on a database that is not SQLite.
"""

# ruff: noqa: T201  (a command-line script: printing is its job)

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dev.py: the same address check it made before the build

import dev  # noqa: E402

ADMIN = "admin@example.com"
RESET = f"python3 dev.py tecnorev users set-password --email {ADMIN}"
EXIT_USAGE = 2


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def tecnorev(*args: str) -> int:
    """A ``tecnorev`` command line run in this process, with its exit code."""
    from tecnorev.core.cli import main

    try:
        return main(list(args))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1


def check_settings(serve_args: list[str]) -> tuple[int, str]:
    """Every setting of every installed part (as ``tecnorev serve`` checks them), and the
    address it will listen on: (exit code, the served URL)."""
    from tecnorev.core.errors import TecnorevError
    from tecnorev.core.settings_schema import validate_settings

    try:
        validate_settings()
    except TecnorevError as error:
        return fail(str(error), int(error.exit_code)), ""
    host, port = dev.listen_address(serve_args, dev.dotenv_values())
    problem = dev.address_problem(host, port)
    if problem:
        return fail(problem, dev.EXIT_SETTINGS), ""
    step(f"settings: every setting valid, {host}:{port} free")
    return 0, f"http://{host}:{port}"


def start_over() -> int:
    """Remove the SQLite database (and its journal files) DATABASE_URL names."""
    from sqlalchemy.engine import make_url

    from tecnorev.core.settings import get_settings

    url = make_url(get_settings().database_url)
    if url.get_backend_name() != "sqlite":
        return fail(
            f"--fresh starts over on the embedded SQLite database only; DATABASE_URL names "
            f"{url.get_backend_name()}: drop and create that database yourself, then start again",
            EXIT_USAGE,
        )
    database = url.database or ""
    if database and database != ":memory:":
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(database + suffix).unlink()
    step(f"fresh start: {database or 'the database'} removed")
    return 0


def demo_data() -> int:
    """The demo admin (its password printed when it is created) and the demo data."""
    step(f"demo data: the administrator {ADMIN} and tecnorev demo load")
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        code = tecnorev("users", "create-admin", "--email", ADMIN, "--if-missing")
    print(said.getvalue(), end="", flush=True)
    if code:
        return code
    if "already exists" in said.getvalue():
        # its password was printed once, on the first start, and is stored only as a hash
        print(f"its password was printed on the first start; a new one: {RESET}")
        print("or start over (new database, demo data, password): python3 dev.py run --fresh")
    return tecnorev("demo", "load")


def main(argv: list[str]) -> int:
    fresh = "--fresh" in argv
    serve_args = [arg for arg in argv if arg != "--fresh"]
    code, served = check_settings(serve_args)
    if not code and fresh:
        code = start_over()
    if not code:
        step("migrations: tecnorev db upgrade heads")
        code = tecnorev("db", "upgrade", "heads")
    if not code:
        code = demo_data()
    if not code:
        code = tecnorev("db", "status")
    if code:
        return code
    step(f"serving at {served} (API docs: {served}/docs; Ctrl+C stops)")
    sys.stdout.flush()
    tecnorev_command = str(
        Path(sys.executable).with_name("tecnorev.exe" if os.name == "nt" else "tecnorev")
    )
    if os.name != "posix":
        import subprocess

        return subprocess.call([tecnorev_command, "serve", *serve_args])
    # a process of its own: `tecnorev serve` must set up metrics before anything imports them
    os.execv(tecnorev_command, [tecnorev_command, "serve", *serve_args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
