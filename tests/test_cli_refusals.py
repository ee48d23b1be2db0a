"""Commands whose alembic meaning is dangerous with one branch per module are refused with the
exact command to use; bad configuration gets a message, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tecnorev.testing.core import migrate, recorded_revisions, run_tecnorev, schema_objects

REPO = Path(__file__).resolve().parents[1]


def assert_refused(result, *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for fragment in fragments:
        assert fragment in output, output


@pytest.fixture
def at_heads(database_url):
    migrate(database_url, "heads")
    return database_url


def test_upgrade_head_names_heads_and_module_head(database_url):
    result = run_tecnorev("db", "upgrade", "head", url=database_url)
    assert_refused(
        result,
        "'upgrade head' is ambiguous",
        "tecnorev db upgrade heads",
        "tecnorev db upgrade <module>@head",
    )
    assert schema_objects(database_url)["tables"] == set()


def test_relative_downgrade_names_the_module_form(at_heads):
    before = recorded_revisions(at_heads)
    result = run_tecnorev("db", "downgrade", "-1", url=at_heads)
    assert_refused(result, "'downgrade -1' is ambiguous", "tecnorev db downgrade <module>@-1")
    assert recorded_revisions(at_heads) == before


def test_stamp_head_is_refused(at_heads):
    result = run_tecnorev("db", "stamp", "head", url=at_heads)
    assert_refused(result, "'stamp head' is ambiguous", "tecnorev db stamp heads")


def test_downgrading_a_module_others_depend_on_names_them_and_needs_cascade(at_heads):
    before = schema_objects(at_heads)
    result = run_tecnorev("db", "downgrade", "inventory@base", url=at_heads)
    assert_refused(
        result,
        "would also revert payments, logistics, sales, which depend on inventory",
        "'tecnorev db downgrade payments@base' then 'tecnorev db downgrade logistics@base' "
        "then 'tecnorev db downgrade sales@base'",
        "--cascade",
    )
    assert schema_objects(at_heads) == before

    result = run_tecnorev("db", "downgrade", "inventory@base", "--cascade", url=at_heads)
    assert result.returncode == 0, result.stderr
    tables = schema_objects(at_heads)["tables"]
    assert "branch" not in tables and "order" not in tables and "payment" not in tables
    assert {"product", "user"} <= tables


def test_downgrading_a_module_nobody_depends_on_needs_no_cascade(at_heads):
    result = run_tecnorev("db", "downgrade", "payments@base", url=at_heads)
    assert result.returncode == 0, result.stderr
    assert "payment" not in schema_objects(at_heads)["tables"]


def test_merging_heads_of_different_modules_is_refused(at_heads):
    result = run_tecnorev("db", "merge", "-m", "join", "heads", url=at_heads)
    assert_refused(result, "merge joins two heads of ONE module", "logistics, payments")
    result = run_tecnorev("db", "merge", "-m", "join", "sales@head", "catalog@head", url=at_heads)
    assert_refused(result, "catalog, sales")


def test_autogenerate_without_a_module_is_refused(at_heads):
    result = run_tecnorev("db", "revision", "--autogenerate", "-m", "x", url=at_heads)
    assert_refused(
        result, "a new revision belongs to one module", "--head <module>@head", "catalog@head"
    )


def test_plain_alembic_heads_points_to_tecnorev_db():
    for args in (["heads"], ["branches"], ["show", "auth@head"]):
        result = subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_refused(result, "tecnorev db heads", "cannot see the installed")


def test_plain_alembic_runs_env_commands_with_discovered_modules(tmp_path):
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    env = {"DATABASE_URL": url}
    import os

    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "heads"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Running upgrade  -> payments_" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert_refused(result, "tecnorev db upgrade heads")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://root@127.0.0.1/test", "supported databases are PostgreSQL"),
        ("not a url", "is not a database URL"),
        ("postgresql+asyncpg://x@127.0.0.1/db", "uses psycopg2"),
    ],
)
def test_bad_database_url_is_explained(url, expected):
    result = run_tecnorev("db", "current", url=url)
    assert_refused(result, expected)
    assert result.returncode == 3


def test_unreachable_database_is_explained():
    result = run_tecnorev("db", "upgrade", "heads", url="postgresql://postgres@127.0.0.1:1/none")
    assert_refused(
        result,
        "cannot connect to the database at postgresql+psycopg2://postgres@127.0.0.1:1/none",
        "Check DATABASE_URL",
    )
    assert result.returncode == 3


def test_dotenv_in_the_working_directory_is_read(tmp_path):
    (tmp_path / ".env").write_text(f"DATABASE_URL=sqlite:///{tmp_path / 'from_env.db'}\n")
    result = run_tecnorev("db", "upgrade", "auth@head", cwd=tmp_path, env={"DATABASE_URL": ""})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "from_env.db").exists()


def test_offline_sql_needs_no_database():
    result = run_tecnorev(
        "db", "upgrade", "heads", "--sql", url="postgresql://postgres@127.0.0.1:1/unreachable"
    )
    assert result.returncode == 0, result.stderr
    assert 'CREATE TABLE "user"' in result.stdout
    assert "CREATE TYPE order_status AS ENUM" in result.stdout
    assert "INSERT INTO alembic_version (version_num) VALUES ('auth_" in result.stdout
