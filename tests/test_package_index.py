"""A module's life across releases, as a deployment lives it: every distribution built from the
tree by hatch's build backend and served by a real package index (pypiserver on 127.0.0.1); a
fresh virtual environment installs from it, migrates and serves; the next sales (the tree's
sales plus a revision adding a column its coupon endpoint shows) is published and installed with
``pip install -U``; ``pip install tecnorev-sales==<today's>`` goes back, and the database follows
through the stored ``downgrade()``; payments is uninstalled and forgotten.  On SQLite and
PostgreSQL.

The index serves only Tecno Rev's distributions; third-party ones come from pip's configured
indexes, as with a private index next to PyPI.  A patch release, not 0.2.0: the tree's logistics and
payments accept ``tecnorev-sales<0.2``, and an additive revision is a patch release."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from .test_api_deployment import free_port, serving
from .test_db_backup import columns
from .venvs import REPO, run_in

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

INDEX_START_TIMEOUT = 30.0
ADMIN = ("admin@example.com", "a long and secret passphrase")
NOTE_REVISION = "sales_5e1a0c0e0b11"
# the tree's version of sales, and the next patch release the test publishes
TODAY = tomllib.loads((REPO / "packages/sales/pyproject.toml").read_text())["project"]["version"]
NEXT = ".".join([*TODAY.split(".")[:-1], str(int(TODAY.split(".")[-1]) + 1)])
# pinned: the index is shared by the module's tests, and one may have published NEXT already
INSTALL = ["tecnorev-api", f"tecnorev-sales=={TODAY}", "tecnorev-logistics", "tecnorev-payments"]

NOTE_REVISION_SOURCE = f'''"""coupon note: a line staff write about the campaign

Revision ID: {NOTE_REVISION}
Revises: {{down}}
Create Date: 2026-12-05 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "{NOTE_REVISION}"
down_revision = "{{down}}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("coupon", sa.Column("note", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("coupon") as batch:
        batch.drop_column("note")
'''


def build_wheel(project: Path, out: Path) -> Path:
    """``hatchling build``: what ``hatch build`` runs, with the backend already installed."""
    before = set(out.glob("*.whl"))
    result = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=project, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = set(out.glob("*.whl")) - before
    return wheel


@dataclass
class Index:
    url: str
    packages: Path

    def publish(self, wheel: Path) -> None:
        # pypiserver serves its directory as it is on each request: a copied file is published
        shutil.copy2(wheel, self.packages / wheel.name)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("index")
    packages = root / "packages"
    packages.mkdir()
    projects = [
        p for p in sorted((REPO / "packages").iterdir()) if (p / "pyproject.toml").is_file()
    ]
    for project in [*projects, REPO / "services" / "api"]:
        build_wheel(project, packages)

    port = free_port()
    log = root / "pypiserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port),
             "--disable-fallback", str(packages)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/simple/"
    try:
        deadline = time.monotonic() + INDEX_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"pypiserver exited {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"pypiserver did not answer in {INDEX_START_TIMEOUT} s:\n{log.read_text()}"
                )
            time.sleep(0.2)
        yield Index(url, packages)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def sales_next(tmp_path_factory, index: Index) -> Path:
    """The tree's sales with one more revision (coupon.note, shown by the coupon endpoints),
    recorded as release NEXT by ``tecnorev db release`` and built into a wheel."""
    from tecnorev.testing.core import module_heads, run_tecnorev

    root = tmp_path_factory.mktemp(f"sales-{NEXT}") / "sales"
    shutil.copytree(
        REPO / "packages" / "sales",
        root,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    code = root / "src" / "tecnorev" / "sales"
    _replace(root / "pyproject.toml", f'version = "{TODAY}"', f'version = "{NEXT}"')
    _replace(
        code / "models.py",
        "    times_used: int = Field(default=0)\n",
        "    times_used: int = Field(default=0)\n"
        "    note: str | None = Field(default=None, max_length=200)\n",
    )
    _replace(
        code / "schemas.py",
        # the coupon endpoints' model (the listing's summary keeps its fields)
        "    is_active: bool\n    created_at: datetime\n    updated_at: datetime\n\n\n"
        "class CouponSummary",
        "    is_active: bool\n    note: str | None = None\n    created_at: datetime\n"
        "    updated_at: datetime\n\n\nclass CouponSummary",
    )
    (code / "migrations" / f"{NOTE_REVISION}_coupon_note.py").write_text(
        NOTE_REVISION_SOURCE.format(down=module_heads()["sales"])
    )
    # the copy is the sales every child process imports, and the one whose version is recorded
    env = {"PYTHONPATH": str(root / "src")}
    released = run_tecnorev("db", "release", "sales", NEXT, url="sqlite://", env=env)
    assert released.returncode == 0, released.stdout + released.stderr
    assert f'heads = ["{NOTE_REVISION}"]' in (code / "migrations" / "releases.toml").read_text()
    return build_wheel(root, tmp_path_factory.mktemp(f"sales-{NEXT}-wheel"))


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in {path}"
    path.write_text(text.replace(old, new))


class Deployment:
    """A virtual environment installing from the index, and the database it runs on."""

    def __init__(self, root: Path, index: Index, url: str) -> None:
        self.root, self.index, self.url = root, index, url
        self.venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=300)

    def pip(self, *args: str) -> str:
        result = subprocess.run(
            [str(self.venv / "bin" / "python"), "-m", "pip", *args],
            capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def install(self, *requirements: str) -> str:
        # --index-url replaces pip's index, so the one pip would have used comes back as an extra
        return self.pip(
            "install", "-q", "--index-url", self.index.url,
            "--extra-index-url", upstream_index(), *requirements,
        )  # fmt: skip

    def version(self, distribution: str) -> str | None:
        shown = subprocess.run(
            [str(self.venv / "bin" / "python"), "-m", "pip", "show", distribution],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        found = re.search(r"^Version: (\S+)", shown.stdout, re.MULTILINE)
        return found.group(1) if found else None

    def tecnorev(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_in(self.venv, "tecnorev", *args, url=self.url, cwd=self.root)

    def ok(self, *args: str) -> str:
        result = self.tecnorev(*args)
        assert result.returncode == 0, (
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def status(self) -> tuple[int, dict[str, dict]]:
        result = self.tecnorev("db", "status", "--json")
        report = json.loads(result.stdout)
        return result.returncode, {m["module"]: m for m in report["modules"]}

    def coupon(self, token_and_base: tuple[str, str], coupon_id: int) -> dict:
        token, base = token_and_base
        request = urllib.request.Request(
            f"{base}/api/v1/sales/coupons/{coupon_id}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def upstream_index() -> str:
    """The index pip is configured with here (environment, then pip's configuration files)."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
    ).stdout
    found = re.search(r"^(?:global|install)\.index-url='([^']+)'", configured, re.MULTILINE)
    return found.group(1) if found else "https://pypi.org/simple/"


def log_in(base: str) -> str:
    form = urllib.parse.urlencode({"username": ADMIN[0], "password": ADMIN[1]}).encode()
    with urllib.request.urlopen(f"{base}/api/v1/auth/token", data=form, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def create_coupon(base: str, token: str) -> int:
    body = json.dumps({"code": "SPRING", "kind": "PERCENT", "value": "10"}).encode()
    request = urllib.request.Request(
        f"{base}/api/v1/sales/coupons",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())["id"]


def execute(url: str, statement: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def test_a_module_is_installed_upgraded_downgraded_and_removed_through_a_package_index(
    index: Index, sales_next: Path, database_url: str, tmp_path: Path
) -> None:
    from tecnorev.testing.core import module_heads

    sales_head = module_heads()["sales"]
    deployment = Deployment(tmp_path, index, database_url)

    # today's release of everything, from the index
    deployment.install(*INSTALL)
    assert deployment.version("tecnorev-sales") == TODAY
    deployment.ok("db", "upgrade", "heads")
    deployment.ok("users", "create-admin", "--email", ADMIN[0], "--password", ADMIN[1])
    assert {"coupon", "order", "shipment", "payment"} <= set(
        sa.inspect(sa.create_engine(database_url, poolclass=sa.pool.NullPool)).get_table_names()
    )
    with serving(deployment.venv, database_url, tmp_path) as server:
        token = log_in(server.base)
        coupon_id = create_coupon(server.base, token)
        assert "note" not in deployment.coupon((token, server.base), coupon_id)

    # the next sales is published and installed: its revision is pending, then applied
    index.publish(sales_next)
    deployment.install("-U", "tecnorev-sales")
    assert deployment.version("tecnorev-sales") == NEXT
    code, modules = deployment.status()
    assert (code, modules["sales"]["state"]) == (1, "pending"), modules["sales"]
    deployment.ok("db", "upgrade", "heads")
    assert "note" in columns(database_url, "coupon")
    execute(database_url, f"UPDATE coupon SET note = 'spring campaign' WHERE id = {coupon_id}")
    with serving(deployment.venv, database_url, tmp_path) as server:
        token = log_in(server.base)
        assert deployment.coupon((token, server.base), coupon_id)["note"] == "spring campaign"

    # back to today's: the database is ahead, status names the command, which runs the stored
    # downgrade() of the revision today's release does not ship
    deployment.install(f"tecnorev-sales=={TODAY}")
    assert deployment.version("tecnorev-sales") == TODAY
    code, modules = deployment.status()
    assert code == 5
    assert modules["sales"]["state"] == "database ahead of code"
    assert (modules["sales"]["back_to"], modules["sales"]["back_refused"]) == (sales_head, None)
    command = f"tecnorev db downgrade sales@{sales_head}"
    assert command in deployment.tecnorev("db", "status").stdout
    # the stored downgrade() drops the note the coupon holds: measured, and confirmed
    refused = deployment.tecnorev("db", "downgrade", f"sales@{sales_head}")
    assert refused.returncode == 1
    assert "would lose 1 row(s):\n  column coupon.note: 1 row(s) with a value" in refused.stderr
    back = deployment.ok("db", "downgrade", f"sales@{sales_head}", "--yes")
    assert f"ran the stored downgrade() of {NOTE_REVISION}" in back
    assert "note" not in columns(database_url, "coupon")
    assert deployment.status()[0] == 0
    log = json.loads(deployment.ok("db", "log", "sales", "--json"))
    assert [(r["revision"], r["direction"]) for r in log][-2:] == [
        (NOTE_REVISION, "upgrade"),
        (NOTE_REVISION, "downgrade"),
    ]
    with serving(deployment.venv, database_url, tmp_path) as server:
        token = log_in(server.base)
        coupon = deployment.coupon((token, server.base), coupon_id)
        assert (coupon["code"], "note" in coupon) == ("SPRING", False)

    # payments leaves: status says so, forget sets its revisions aside, the rest works
    deployment.pip("uninstall", "-y", "tecnorev-payments")
    code, modules = deployment.status()
    assert code == 5 and modules["payments"]["state"] == "not installed", modules["payments"]
    deployment.ok("db", "forget", "payments")
    code, modules = deployment.status()
    assert (code, modules["payments"]["state"], modules["payments"]["installed"]) == (
        0,
        "set aside",
        False,
    ), modules["payments"]
    deployment.ok("db", "check")
    with serving(deployment.venv, database_url, tmp_path) as server:
        assert "payments" not in server.get("/health")[1]["modules"]
        token = log_in(server.base)
        assert deployment.coupon((token, server.base), coupon_id)["code"] == "SPRING"
