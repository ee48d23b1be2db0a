#!/usr/bin/env python3
"""A stand-in for the application's service manager (systemd, a container runtime) in deploy
rehearsals and tests: it starts, restarts and stops a real long-running process that answers
HTTP on a port (``python -m http.server``; the API has no server yet).

    placeholder_service.py start|restart|stop --pidfile FILE --port PORT

``restart`` stops the running process (SIGTERM, waiting for it to exit) and starts a new one,
as ``systemctl restart`` does.  Standard library only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def running_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return None if _zombie(pid) else pid


def _zombie(pid: int) -> bool:
    """An exited process nobody has reaped yet (no init reaping in a bare container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def stop(pidfile: Path) -> None:
    pid = running_pid(pidfile)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running_pid(pidfile) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)


def start(pidfile: Path, port: int) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command, as a service would
    )
    pidfile.write_text(str(process.pid))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "restart", "stop"))
    parser.add_argument("--pidfile", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args(argv)
    if options.action in ("restart", "stop"):
        stop(options.pidfile)
    if options.action in ("start", "restart"):
        start(options.pidfile, options.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
