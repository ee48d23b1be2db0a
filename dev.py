#!/usr/bin/env python3
"""Bootstrap for a fresh checkout: needs nothing but Python 3.11+.

    python3 dev.py run               the product on the embedded database (nox -s run)
    python3 dev.py run --fresh       ... starting over: a new database, demo data, admin password
    python3 dev.py run -- --port 8080   ... with options for `tecnorev serve` after "--"
    python3 dev.py tecnorev ARGS     the `tecnorev` command of the run environment (.nox/run)
    python3 dev.py test              the CI suite (nox: lint, tests, package, wheels, rehearsal)
    python3 dev.py test -- -k foo    ... with arguments for pytest after "--"
    python3 dev.py nox -s build      any nox command line

It keeps nox in .venv-tools/ (created on first use; DEV_PY_TOOLS names another folder) and hands
over to it; nox builds every other environment itself.  Before `run` builds anything it checks
DATABASE_URL and the address to serve on, and fails at once (exit 3) when either cannot work.
Ctrl+C (SIGINT) and SIGTERM go to every process of the command, which all stop; the exit code
is the command's (0 when the server stopped cleanly).

Written without 3.11-only syntax so that an older Python 3 (3.7+) gets to the version check
below and says what is wrong instead of failing with a syntax error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import venv
from typing import NoReturn
from urllib.parse import parse_qs, urlsplit

MINIMUM = (3, 11)
ROOT = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.abspath(os.environ.get("DEV_PY_TOOLS") or os.path.join(ROOT, ".venv-tools"))
NOX_REQUIREMENT = "nox>=2025.2"  # keep in step with [dependency-groups] dev in pyproject.toml
TOOLS_STAMP = "dev-py-installed.txt"  # in TOOLS: what pip installed there, so it runs once

COMMANDS = {
    "run": ["-s", "run"],  # nox -s run [ARGS...] [-- [--fresh] SERVE OPTIONS...]
    "tecnorev": ["-s", "run", "--", "tecnorev"],  # nox -s run -- tecnorev ARGS...
    "test": [],  # nox [ARGS...]: the default sessions, i.e. the CI suite
    "nox": [],  # nox ARGS...: anything nox accepts
}
# docs/cli.md: 3 = the database cannot be reached, or a setting is invalid (a port taken too)
EXIT_SETTINGS = 3
DEFAULT_DATABASE_URL = "sqlite:///tecnorev.db"  # as tecnorev.core.settings


def usage() -> str:
    return __doc__.split("\n\n")[1] if __doc__ else "python3 dev.py {run,test,nox} [ARGS...]"


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"dev.py: {message}", file=sys.stderr)
    sys.exit(code)


def tools_python() -> str:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return os.path.join(TOOLS, scripts, "python.exe" if os.name == "nt" else "python")


def ensure_tools() -> str:
    """Create .venv-tools/ if missing (or broken) and install nox into it; return its Python.
    Once nox is installed (the stamp says so) this costs nothing: no pip on every start."""
    python = tools_python()
    stamp = os.path.join(TOOLS, TOOLS_STAMP)
    if os.path.exists(python) and _read(stamp) == NOX_REQUIREMENT:
        return python
    usable = os.path.exists(python) and subprocess.call([python, "-c", "pass"]) == 0
    if not usable:
        say(f"creating {os.path.relpath(TOOLS)} (a virtual environment for nox)")
        try:
            venv.create(TOOLS, with_pip=True, clear=True)
        except (OSError, subprocess.CalledProcessError) as error:
            # Debian/Ubuntu ship venv's pip bootstrap separately.
            fail(f"could not create {TOOLS}: {error}\n(on Debian/Ubuntu: apt install python3-venv)")
    say(f"making sure {NOX_REQUIREMENT} is installed in {os.path.relpath(TOOLS)}")
    installed = subprocess.call(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", NOX_REQUIREMENT]
    )
    if installed != 0:
        fail(f"could not install {NOX_REQUIREMENT} (pip exited with {installed})", installed)
    with open(stamp, "w", encoding="utf-8") as file:
        file.write(NOX_REQUIREMENT)
    return python


def say(message: str) -> None:
    # stderr: stdout belongs to the command (`dev.py tecnorev db sql catalog > catalog.sql`)
    print(f"dev.py: {message}", file=sys.stderr, flush=True)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip()
    except OSError:
        return ""


# --------------------------------------------------------------------------- before `run` builds


def dotenv_values() -> dict[str, str]:
    """The .env the product reads (the first found from the root upwards, as python-dotenv's
    find_dotenv does from the working directory nox runs in), read plainly: NAME=value lines,
    `export`, quotes, comments.  The product reads it fully, and refuses what it cannot read."""
    folder = ROOT
    while True:
        path = os.path.join(folder, ".env")
        if os.path.isfile(path):
            break
        parent = os.path.dirname(folder)
        if parent == folder:
            return {}
        folder = parent
    values = {}
    with open(path, encoding="utf-8", errors="replace") as file:
        for raw in file:
            line = raw.strip()
            if line.startswith("export "):
                line = line[len("export ") :].lstrip()
            name, equals, value = line.partition("=")
            if not equals or line.startswith("#"):
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
                value = value[1:-1]
            else:
                value = value.split(" #")[0].strip()
            values[name.strip()] = value
    return values


def setting(name: str, dotenv: dict[str, str], default: str) -> str:
    """The environment wins over .env; an empty value counts as unset (as in the product)."""
    return os.environ.get(name, "").strip() or dotenv.get(name, "").strip() or default


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def database_problem(url: str) -> str | None:
    """What stops DATABASE_URL from working, found without the product installed: its form,
    a SQLite file's folder, a PostgreSQL server that does not answer.  None when it looks fine."""
    scheme, sep, rest = url.partition("://")
    dialect, _, driver = scheme.partition("+")
    if not sep or (not rest and dialect != "sqlite"):
        return (
            f"DATABASE_URL={url!r} is not a database URL; expected for example "
            "'postgresql+psycopg2://user@127.0.0.1:5432/tecnorev' or 'sqlite:///tecnorev.db'"
        )
    if dialect == "sqlite":
        path = rest[1:].partition("?")[0]  # sqlite:///relative.db, sqlite:////absolute.db
        folder = os.path.dirname(os.path.join(ROOT, path))
        if path not in ("", ":memory:") and not os.path.isdir(folder):
            return f"DATABASE_URL={url!r}: the folder {folder} does not exist"
        return None
    if dialect not in ("postgresql", "postgres"):
        return (
            f"DATABASE_URL uses {dialect!r}; supported databases are PostgreSQL "
            "('postgresql+psycopg2://...') and SQLite ('sqlite:///file.db')"
        )
    if driver not in ("", "psycopg2"):
        return f"DATABASE_URL asks for the {driver!r} driver; write 'postgresql+psycopg2://...'"
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        return f"DATABASE_URL={redact(url)!r} has a port that is not a number"
    host = parts.hostname or parse_qs(parts.query).get("host", [""])[0]
    if not host or host.startswith("/"):
        return None  # a local socket: the product's own connection check says more
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        return (
            f"cannot connect to the database at {redact(url)}: {reason}. Check DATABASE_URL "
            "(environment or .env) and that the server answers"
        )
    return None


def listen_address(serve_args: list[str], dotenv: dict[str, str]) -> tuple[str, str]:
    """Where `tecnorev serve` will listen: --host/--port among its options, else
    TECNOREV_HOST/TECNOREV_PORT, else its defaults."""
    found = {
        "--host": setting("TECNOREV_HOST", dotenv, "127.0.0.1"),
        "--port": setting("TECNOREV_PORT", dotenv, "8000"),
    }
    for i, arg in enumerate(serve_args):
        name, equals, value = arg.partition("=")
        if name in found:
            following = serve_args[i + 1] if i + 1 < len(serve_args) else ""
            found[name] = value if equals else following
    return found["--host"], found["--port"]


def address_problem(host: str, port_text: str) -> str | None:
    """The same probe as `tecnorev serve`'s: a bind with SO_REUSEADDR fails on any listener."""
    if not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
        return f"the port {port_text!r} (TECNOREV_PORT or --port) is not a number from 1 to 65535"
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, int(port_text)))
    except OSError as error:
        return (
            f"cannot listen on {host}:{port_text}: {error.strerror or error}; stop what serves "
            "there, or choose another port: python3 dev.py run -- --port 8001"
        )
    finally:
        probe.close()
    return None


def check_before_building(serve_args: list[str]) -> None:
    """Settings and port first: a newcomer learns in a second, not after a build, what to fix."""
    dotenv = dotenv_values()
    url = setting("DATABASE_URL", dotenv, DEFAULT_DATABASE_URL)
    host, port = listen_address(serve_args, dotenv)
    for problem in (database_problem(url), address_problem(host, port)):
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(EXIT_SETTINGS)
    source = "the default" if url == DEFAULT_DATABASE_URL else "environment or .env"
    print(f"==> settings: DATABASE_URL={redact(url)} ({source}), serving on {host}:{port}")


# --------------------------------------------------------------------------- running a command


def group_members(group: int) -> list[int]:
    """Live processes of a process group.  Zombies do not count: an orphan's is reaped by
    init, which in some containers never happens."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [group]
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(group):
            members.append(int(entry))
    return members


def stop_leftovers(group: int) -> None:
    """What the command left running in its group (a server's workers, pytest's workers after
    their parent was killed): a moment to finish, then SIGTERM, then SIGKILL."""
    for sig, wait in ((None, 3.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
        if sig is not None:
            if not group_members(group):
                return
            say(f"stopping {len(group_members(group))} process(es) left behind ({sig.name})")
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + wait
        while group_members(group) and time.monotonic() < deadline:
            time.sleep(0.05)


def supervise(command: list[str], *, stop_is_success: bool = False) -> int:
    """Run `command` in a process group of its own and return its exit code.  SIGINT and SIGTERM
    sent to this process (Ctrl+C at a terminal reaches this group only) go to that whole group,
    as a terminal's would; a third one kills it.  Nothing of the group outlives the command.
    With `stop_is_success` (a server), ending on the signal it was asked to stop with is 0:
    uvicorn re-raises SIGTERM once it has shut down cleanly."""
    if os.name != "posix":
        try:
            return subprocess.call(command, cwd=ROOT)
        except KeyboardInterrupt:
            return 130
    child = subprocess.Popen(command, cwd=ROOT, start_new_session=True)
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL if len(received) > 2 else signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
        stop_leftovers(child.pid)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop_is_success and received[:1] and code in (0, -received[0]) and len(received) < 3:
        return 0
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    if sys.version_info < MINIMUM:
        found = ".".join(str(part) for part in sys.version_info[:3])
        fail(f"Python {MINIMUM[0]}.{MINIMUM[1]}+ is required; this is {found} ({sys.executable})")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}\n\n{usage()}")

    arguments = COMMANDS[command] + rest
    if command == "run":
        options, serve_args = rest, []
        if "--" in rest:
            at = rest.index("--")
            options, serve_args = rest[:at], rest[at + 1 :]
        fresh = [option for option in options if option == "--fresh"]
        options = [option for option in options if option != "--fresh"]
        check_before_building(serve_args)
        posargs = fresh + serve_args
        arguments = COMMANDS[command] + options + (["--"] if posargs else []) + posargs

    python = ensure_tools()
    nox = [python, "-m", "nox", "--noxfile", os.path.join(ROOT, "noxfile.py")]
    say(f"nox {' '.join(arguments)}".rstrip())
    return supervise(nox + arguments, stop_is_success=command == "run")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
