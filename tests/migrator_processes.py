"""Helpers for tests that watch a real ``tecnorev db`` process from the outside: a scratch copy
of the catalog module to add revisions to, a migrator child whose output is read while it runs,
and polling of the server until a session reaches a known point."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib.metadata import distribution
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class ScratchCatalog:
    """The catalog module's source copied under ``tmp_path``, first on the children's path."""

    def __init__(self, tmp_path: Path) -> None:
        src = tmp_path / "src"
        shutil.copytree(
            REPO / "packages/catalog/src/tecnorev/catalog",
            src / "tecnorev/catalog",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        self.migrations = src / "tecnorev/catalog/migrations"
        # the next, unreleased version: the releases recorded so far, and a version above them
        # (metadata that shadows the installed distribution's), so its revisions need no record
        installed = distribution("tecnorev-catalog")
        *release, last = installed.version.split(".")
        upcoming = ".".join([*release, str(int(last) + 1)])
        info = src / f"tecnorev_catalog-{upcoming}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            "\n".join(
                [
                    "Metadata-Version: 2.1",
                    "Name: tecnorev-catalog",
                    f"Version: {upcoming}",
                    *(f"Requires-Dist: {r}" for r in installed.requires or []),
                ]
            )
            + "\n"
        )
        (info / "entry_points.txt").write_text(
            "[tecnorev.modules]\ncatalog = tecnorev.catalog:module\n"
        )
        self.env = {"PYTHONPATH": str(src)}
        self.head = branch_head(self.migrations)

    def add_table_model(self, table: str) -> None:
        """A model for a table with only an integer primary key (so ``verify`` finds every
        table a scratch revision creates defined by a model)."""
        models = self.migrations.parent / "models.py"
        name = "".join(part.title() for part in table.split("_"))
        text = models.read_text()
        if "import sqlmodel\n" not in text:
            text = text.replace(
                "from sqlmodel import Field\n", "import sqlmodel\nfrom sqlmodel import Field\n"
            )
        models.write_text(
            f"{text}\n\nclass {name}(sqlmodel.SQLModel, table=True):\n"
            f"    __tablename__ = {table!r}\n\n"
            "    id: int | None = Field(default=None, primary_key=True)\n"
        )

    def add_revision(self, name: str, upgrade: str, downgrade: str = "pass") -> str:
        """A revision on top of the current head; ``upgrade`` is the body of ``upgrade()``."""
        revision = f"catalog_{name}"
        body = "\n".join(f"    {line}" for line in upgrade.strip().splitlines())
        (self.migrations / f"{revision}.py").write_text(
            f'"""{name}"""\n\nimport os\nimport time\nfrom pathlib import Path\n\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {revision!r}\ndown_revision = {self.head!r}\nbranch_labels = None\n"
            f"depends_on = None\n\n\ndef upgrade():\n{body}\n\n\n"
            f"def downgrade():\n    {downgrade}\n"
        )
        self.head = revision
        return revision


class Migrator:
    """``tecnorev db <args>`` in a child process; stdout and stderr collected as they come."""

    def __init__(self, *args: str, url: str, env: dict[str, str] | None = None) -> None:
        child_env = {**os.environ, **(env or {}), "DATABASE_URL": url}
        child_env.pop("TECNOREV_DEBUG", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tecnorev.core.cli import main; "
             "sys.exit(main())", "db", *args],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.process.stdout, self._out)),
            threading.Thread(target=self._drain, args=(self.process.stderr, self._err)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_for_output(self, pattern: str, timeout: float = 30) -> None:
        wait_until(lambda: re.search(pattern, self.stdout), timeout, self, f"output {pattern!r}")

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)  # the pipes close when the process ends
        return code

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.finish()


def wait_until(
    probe: Callable[[], T], timeout: float, migrator: Migrator | None = None, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with the migrator's output if it
    ends (or the time runs out) first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if migrator is not None and migrator.process.poll() is not None:
            migrator.finish()
            raise AssertionError(
                f"the migrator ended (exit {migrator.process.returncode}) before {what}:\n"
                f"{migrator.stdout}\n{migrator.stderr}"
            )
        time.sleep(0.05)
    detail = f"\n{migrator.stdout}\n{migrator.stderr}" if migrator else ""
    raise AssertionError(f"timed out waiting for {what}{detail}")


def scalar(url: str, sql: str, **params: object) -> object:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


def waiting_backend(url: str, query_prefix: str) -> int | None:
    """The pid of a session of this database waiting for a lock in a statement that starts
    with ``query_prefix``."""
    return scalar(  # type: ignore[return-value]
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE :prefix LIMIT 1",
        prefix=query_prefix + "%",
    )


def branch_head(migrations: Path) -> str:
    """The one revision of a module's migrations folder that no other revision there revises."""
    revisions, revised = set(), set()
    for path in migrations.glob("*.py"):
        text = path.read_text()
        revisions.add(re.search(r'^revision(?:: str)? = "(\w+)"', text, re.M)[1])
        down = re.search(r'^down_revision(?:: [^=]+)? = "(\w+)"', text, re.M)
        if down:
            revised.add(down[1])
    (head,) = revisions - revised
    return head
