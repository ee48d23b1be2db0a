"""``tecnorev module new``: the guide's Common Workflow for a brand-new module, end to end in a
real environment: scaffold, add a model, install, generate, migrate, run its routes and tests."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest

from tecnorev.testing.core import run_tecnorev

from .venvs import make_venv, pip, run_in

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

MODEL = """

class LoyaltyAccount(AuditMixin, table=True):
    __tablename__ = "loyalty_account"

    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="user.id", unique=True)
    points: int = Field(default=0)
"""


def test_scaffold_generate_install_migrate_and_test(tmp_path, wheels):
    result = run_tecnorev(
        "module",
        "new",
        "loyalty",
        "--path",
        str(tmp_path),
        "--depends-on",
        "sales",
        "--description",
        "points for customers",
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "loyalty"
    assert f"created {root}" in result.stdout
    package = root / "src/tecnorev/loyalty"
    for name in ("models.py", "schemas.py", "service.py", "routes.py", "config.py", "cli.py"):
        assert (package / name).is_file()
    (first,) = (package / "migrations").glob("loyalty_*_start_the_loyalty_branch.py")
    assert 'branch_labels: str | Sequence[str] | None = ("loyalty",)' in first.read_text()
    # what it owns: a permission code (auth, a module it depends on through sales, adds it
    # and the revision granting it), a settings class and a command group
    (grants,) = (package / "migrations").glob("loyalty_*_loyalty_grants_its_permission_codes.py")
    assert f'down_revision: str | Sequence[str] | None = "{first.name[:20]}"' in grants.read_text()
    assert 'Permission(LOYALTY_MANAGE, "change loyalty"' in (package / "permissions.py").read_text()
    descriptor = (package / "__init__.py").read_text()
    assert 'settings="tecnorev.loyalty.config:LoyaltySettings"' in descriptor
    assert 'commands=(("loyalty", "tecnorev.loyalty.cli:app"),)' in descriptor
    # its distribution is shaped like the project's own: licence, py.typed, classifiers, URLs
    written = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    catalog = tomllib.loads((REPO / "packages/catalog/pyproject.toml").read_text())["project"]
    for key in ("license", "license-files", "classifiers", "requires-python"):
        assert written[key] == catalog[key], key
    assert written["urls"] == {
        key: url.replace("/catalog", "/loyalty") for key, url in catalog["urls"].items()
    }
    assert (root / "LICENSE").read_text() == (REPO / "LICENSE").read_text()
    assert (package / "py.typed").is_file()

    models = package / "models.py"
    models.write_text(models.read_text() + MODEL)

    needed = ["core", "migrate", "testing", "auth", "catalog", "inventory", "sales"]
    venv = make_venv(
        tmp_path / "venv", *[wheels[n] for n in needed], "hatchling>=1.27", "editables"
    )
    pip(venv, "install", "-q", "--no-build-isolation", "-e", f"{root}[test]")

    url = f"sqlite:///{tmp_path / 'loyalty.db'}"
    work = tmp_path / "work"
    work.mkdir()
    generated = run_in(
        venv,
        "tecnorev",
        "db",
        "generate",
        "loyalty",
        "-m",
        "create loyalty tables",
        url=url,
        cwd=work,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    (revision,) = (package / "migrations").glob("*create_loyalty_tables.py")
    text = revision.read_text()
    assert "create_table" in text and "loyalty_account" in text
    assert f'down_revision: str | Sequence[str] | None = "{grants.name[:20]}"' in text

    migrated = run_in(venv, "tecnorev", "db", "upgrade", "heads", url=url, cwd=work)
    assert migrated.returncode == 0, migrated.stderr
    assert "-> loyalty_" in migrated.stderr
    assert run_in(venv, "tecnorev", "db", "check", url=url, cwd=work).returncode == 0
    with sqlite3.connect(tmp_path / "loyalty.db") as db:
        granted = db.execute(
            "SELECT r.name FROM role_permission g JOIN role r ON r.id = g.role_id "
            "WHERE g.permission = 'loyalty:manage' ORDER BY r.name"
        ).fetchall()
        owner = db.execute("SELECT module FROM permission WHERE code = 'loyalty:manage'")
        assert owner.fetchall() == [("loyalty",)]
    assert granted == [("admin",), ("manager",)]

    settings = run_in(
        venv, "tecnorev", "settings", "--json", url=url, cwd=work,
        env={"TECNOREV_LOYALTY_PAGE_SIZE": "20"},
    )  # fmt: skip
    assert settings.returncode == 0, settings.stderr
    (page_size,) = [s for s in json.loads(settings.stdout) if s["owner"] == "loyalty"]
    assert page_size["name"] == "TECNOREV_LOYALTY_PAGE_SIZE"
    assert (page_size["value"], page_size["source"]) == ("20", "environment")
    info = run_in(venv, "tecnorev", "loyalty", "info", url=url, cwd=work)
    assert info.returncode == 0, info.stderr
    assert info.stdout.strip() == "loyalty: page size 50"

    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    tests = subprocess.run(
        [str(venv / "bin/python"), "-m", "pytest", "-q", "--import-mode=importlib",
         "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout, tests.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sales"], 1, "a module named 'sales' already exists"),
        (["Bad-Name"], 2, "'Bad-Name' is not a usable module name"),
        (
            ["gift", "--depends-on", "salse"],
            2,
            "'gift' would depend on salse, which is not installed",
        ),
    ],
)
def test_refusals(tmp_path, args, code, message):
    result = run_tecnorev("module", "new", *args, "--path", str(tmp_path))
    assert result.returncode == code
    assert message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "gift").mkdir()
    result = run_tecnorev("module", "new", "gift", "--path", str(tmp_path))
    assert result.returncode == 1
    assert "already exists: choose another name or --path" in result.stderr
