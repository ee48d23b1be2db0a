#!/usr/bin/env python3
"""Bootstrap for a fresh checkout: needs nothing but Python 3.11+.

    python3 dev.py run               the product on the embedded database (nox -s run)
    python3 dev.py test              the CI suite (nox: lint, tests, package, wheels, rehearsal)
    python3 dev.py test -- -k foo    ... with arguments for pytest after "--"
    python3 dev.py nox -s build      any nox command line

It keeps nox in .venv-tools/ (created on first use) and hands over to it; nox builds every other
environment itself.  The exit code is nox's.

Written without 3.11-only syntax so that an older Python 3 (3.7+) gets to the version check
below and says what is wrong instead of failing with a syntax error.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from typing import NoReturn

MINIMUM = (3, 11)
ROOT = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(ROOT, ".venv-tools")
NOX_REQUIREMENT = "nox>=2025.2"  # keep in step with [dependency-groups] dev in pyproject.toml

COMMANDS = {
    "run": ["-s", "run"],  # nox -s run [ARGS...]
    "test": [],  # nox [ARGS...]: the default sessions, i.e. the CI suite
    "nox": [],  # nox ARGS...: anything nox accepts
}


def usage() -> str:
    return __doc__.split("\n\n")[1] if __doc__ else "python3 dev.py {run,test,nox} [ARGS...]"


def fail(message: str, code: int = 2) -> NoReturn:
    print(f"dev.py: {message}", file=sys.stderr)
    sys.exit(code)


def tools_python() -> str:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return os.path.join(TOOLS, scripts, "python.exe" if os.name == "nt" else "python")


def ensure_tools() -> str:
    """Create .venv-tools/ if missing (or broken) and install nox into it; return its Python."""
    python = tools_python()
    usable = os.path.exists(python) and subprocess.call([python, "-c", "pass"]) == 0
    if not usable:
        print(f"dev.py: creating {os.path.relpath(TOOLS)} (a virtual environment for nox)")
        try:
            venv.create(TOOLS, with_pip=True, clear=True)
        except (OSError, subprocess.CalledProcessError) as error:
            # Debian/Ubuntu ship venv's pip bootstrap separately.
            fail(f"could not create {TOOLS}: {error}\n(on Debian/Ubuntu: apt install python3-venv)")
    print(f"dev.py: making sure {NOX_REQUIREMENT} is installed in {os.path.relpath(TOOLS)}")
    installed = subprocess.call(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", NOX_REQUIREMENT]
    )
    if installed != 0:
        fail(f"could not install {NOX_REQUIREMENT} (pip exited with {installed})", installed)
    return python


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

    python = ensure_tools()
    nox = [python, "-m", "nox", "--noxfile", os.path.join(ROOT, "noxfile.py")]
    arguments = COMMANDS[command] + rest
    print(f"dev.py: nox {' '.join(arguments)}".rstrip(), flush=True)
    try:
        return subprocess.call(nox + arguments, cwd=ROOT)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
