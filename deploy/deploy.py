#!/usr/bin/env python3
"""Deploy Tecno Rev without stopping it: expand the schema once, restart the application
replica by replica (each only once ``tecnorev db status`` says the code can run, and the one
before answers), then contract.

    deploy.py all --restart CMD [--restart CMD ...]     one host, or every replica from here
    deploy.py migrate                                    the expand step alone
    deploy.py rollout --restart CMD [--restart CMD ...]  the gated rollout alone
    deploy.py contract                                   the contract step alone

Steps, each stopping the deployment when it fails:

1. ``--install CMD`` (optional): put the new distributions in place (e.g. ``pip install -r
   requirements.lock``); it touches no database, and the migrations come with the new code.
2. expand, exactly once, from this process: ``tecnorev db upgrade heads --backup`` (on
   PostgreSQL contract revisions are held back; declared backfills run here, in batches).
   Replicas never migrate when they start (if one did, the migration lock would serialise it).
3. gate: ``tecnorev db status`` must exit 0 (nothing but contract revisions pending, nothing
   edited or missing).
4. rollout: each ``--restart`` command in turn (``systemctl restart tecnorev@1``, ``kubectl
   rollout restart ...``); with ``--health-url``, the replica must answer 2xx before the next
   one restarts, so a broken release stops after one replica.
5. contract: ``tecnorev db contract --wait SECONDS`` (``--contract-wait``, 120 s): refused
   while a replica of the old release is left (replicas report what they run; a stopped one
   withdraws its report, a killed one's expires after three report intervals), it asks again
   until then; skipped with ``--no-contract``, to contract later.

``DATABASE_URL`` (environment or ``.env``) names the database, as for every ``tecnorev``
command.  Standard library only: it runs with the deployment's own Python.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path


class DeployError(Exception):
    """A step failed; the message says what state the deployment was left in."""


def say(message: str) -> None:
    print(f"deploy: {message}", flush=True)


def default_tecnorev() -> str:
    """The ``tecnorev`` beside the Python running this script (the deployment's venv)."""
    beside = Path(sys.executable).parent / "tecnorev"
    return str(beside) if beside.exists() else "tecnorev"


def run(command: Sequence[str] | str) -> int:
    shown = command if isinstance(command, str) else shlex.join(command)
    say(f"$ {shown}")
    return subprocess.run(command, shell=isinstance(command, str)).returncode


def install(command: str) -> None:
    if run(command) != 0:
        raise DeployError("installing the new version failed: nothing was migrated or restarted")


def migrate(tecnorev: str, backup_dir: str | None) -> None:
    command = [tecnorev, "db", "upgrade", "heads"]
    if backup_dir is not None:
        command += ["--backup", "--backup-dir", backup_dir]
    if run(command) != 0:
        raise DeployError(
            "the migration failed, so nothing was restarted: the running replicas keep the "
            "previous version (each revision is applied whole or not at all; see the message "
            "above, and 'tecnorev db restore <backup>' if the data must go back)"
        )


def gate(tecnorev: str) -> None:
    if run([tecnorev, "db", "status"]) != 0:
        raise DeployError(
            "'tecnorev db status' does not report every module up to date (see above), so "
            "nothing was restarted"
        )


def contract(tecnorev: str, wait: float) -> None:
    if run([tecnorev, "db", "contract", "--wait", f"{wait:g}"]) != 0:
        raise DeployError(
            "the contract step was refused or failed (see above): every replica runs the new "
            "release against the expanded schema, which serves both; run "
            "'tecnorev db contract' once what it names is resolved"
        )


def wait_healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if 200 <= response.status < 300:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    return False


def rollout(restarts: list[str], health_urls: list[str], timeout: float) -> None:
    total = len(restarts)
    for number, command in enumerate(restarts, start=1):
        say(f"restarting replica {number} of {total}")
        left = _untouched(number, total)
        if run(command) != 0:
            raise DeployError(f"restarting replica {number} failed; {left}")
        url = health_urls[number - 1] if number <= len(health_urls) else None
        if url is None:
            continue
        if not wait_healthy(url, timeout):
            raise DeployError(
                f"replica {number} did not answer {url} within {timeout:g}s; stopping the "
                f"rollout: {left}"
            )
        say(f"replica {number} answers {url}")


def _untouched(number: int, total: int) -> str:
    if number == total:
        return "it was the last replica"
    if number + 1 == total:
        return f"replica {total} still runs the previous version"
    return f"replicas {number + 1}-{total} still run the previous version"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="deploy.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("all", "migrate", "rollout", "contract"))
    parser.add_argument("--install", metavar="CMD", help="command installing the new version")
    parser.add_argument("--backup-dir", default="backups", help="default: ./backups")
    parser.add_argument("--no-backup", action="store_true", help="migrate without a backup")
    parser.add_argument(
        "--restart", metavar="CMD", action="append", default=[], help="one per replica, in order"
    )
    parser.add_argument(
        "--health-url", metavar="URL", action="append", default=[], help="one per --restart"
    )
    parser.add_argument("--health-timeout", type=float, default=30.0, metavar="SECONDS")
    parser.add_argument("--tecnorev", default=default_tecnorev(), help="the tecnorev command")
    parser.add_argument("--no-contract", action="store_true", help="'all' stops after the rollout")
    parser.add_argument(
        "--contract-wait",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long contract waits for the old release's replicas to be gone (default 120)",
    )
    options = parser.parse_args(argv)
    if options.step in ("all", "rollout") and not options.restart:
        parser.error(f"'{options.step}' needs at least one --restart command")
    if len(options.health_url) > len(options.restart):
        parser.error("more --health-url than --restart")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    try:
        if options.step in ("all", "migrate"):
            if options.install:
                install(options.install)
            migrate(options.tecnorev, None if options.no_backup else options.backup_dir)
        if options.step in ("all", "rollout"):
            gate(options.tecnorev)
            rollout(options.restart, options.health_url, options.health_timeout)
        if options.step == "contract" or (options.step == "all" and not options.no_contract):
            contract(options.tecnorev, options.contract_wait)
    except DeployError as exc:
        say(f"FAILED: {exc}")
        return 1
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
