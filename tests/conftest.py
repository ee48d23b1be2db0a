"""Shared fixtures: databases, and scratch copies of a module that shadow the installed one."""

import shutil
import tempfile
from pathlib import Path

import pytest

from tecnorev.testing.core import backend, database_url, postgres_url, run_tecnorev  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Hypothesis keeps its caches (unicode tables, constants) in ./.hypothesis, even with
    database=None, and writes them as tests are collected: in a temporary folder instead, so
    tests write nothing into the checkout."""
    try:
        from hypothesis.configuration import set_hypothesis_home_dir
    except ImportError:
        return
    home = tempfile.mkdtemp(prefix="tecnorev-hypothesis-")
    set_hypothesis_home_dir(home)
    config.add_cleanup(lambda: shutil.rmtree(home, ignore_errors=True))


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """Wheels of every package, keyed by module name ("core", "sales", ...)."""
    from .venvs import build_wheels

    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def scratch(tmp_path):
    """A copy of the catalog module's source, first on the path of every child process."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "packages/catalog/src/tecnorev/catalog",
        src / "tecnorev/catalog",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # the next, unreleased version: the revisions a test adds are in no release record yet
    (src / "tecnorev/catalog/migrations/releases.toml").unlink()

    class Scratch:
        root = src / "tecnorev/catalog"
        migrations = root / "migrations"
        env = {"PYTHONPATH": str(src)}

        def run(self, *args, url, cwd=tmp_path):
            return run_tecnorev(*args, url=url, env=self.env, cwd=cwd)

        def add_product_field(self, line: str) -> None:
            models = self.root / "models.py"
            text = models.read_text()
            anchor = "    category_id: int | None"
            models.write_text(text.replace(anchor, f"    {line}\n{anchor}", 1))

        def add_revision(self, name: str, body: str, down: str) -> str:
            rev = f"catalog_{name}"
            (self.migrations / f"{rev}.py").write_text(
                f'"""{name}"""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
                f"revision = {rev!r}\ndown_revision = {down!r}\nbranch_labels = None\n"
                f"depends_on = None\n\n\n{body}\n"
            )
            return rev

    return Scratch()


@pytest.fixture
def sqlite_at_heads(tmp_path):
    """A SQLite database with every installed revision applied."""
    url = f"sqlite:///{tmp_path / 'heads.db'}"
    assert run_tecnorev("db", "upgrade", "heads", url=url, cwd=tmp_path).returncode == 0
    return url
