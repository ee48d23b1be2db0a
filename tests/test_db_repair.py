"""Checksums that survive a checkout style, ``tecnorev db repair`` for a reviewed edit, and
failed attempts in ``tecnorev db log``: on PostgreSQL and SQLite, against copies of every
module's source that shadow the installed ones (the tree itself is never touched)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sqlalchemy as sa

from tecnorev.migrate.ledger import migration_log
from tecnorev.testing.core import run_tecnorev

REPO = Path(__file__).resolve().parents[1]
MODULES = ("auth", "catalog", "inventory", "sales", "logistics", "payments")
CATALOG_FIRST = "catalog_68c333c29785"


def _shadow(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    src = tmp_path / "src"
    for name in MODULES:
        shutil.copytree(
            REPO / f"packages/{name}/src/tecnorev/{name}",
            src / "tecnorev" / name,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return src / "tecnorev", {"PYTHONPATH": str(src)}


def _db(*args: str, url: str, env: dict[str, str]):
    return run_tecnorev("db", *args, url=url, env=env)


def _log(url: str, env: dict[str, str]) -> list[dict]:
    result = _db("log", "--json", url=url, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_line_endings_and_trailing_spaces_are_not_edits(tmp_path, database_url):
    root, env = _shadow(tmp_path)
    assert _db("upgrade", "heads", url=database_url, env=env).returncode == 0
    applied = sorted(root.glob("*/migrations/*.py"))
    assert len(applied) >= 15  # every revision of every module
    for path in applied:  # a CRLF checkout, with an editor's stray spaces and blank lines
        lines = path.read_text(encoding="utf-8").splitlines()
        path.write_bytes(("  \r\n".join(lines) + "\r\n\r\n").encode())

    status = _db("status", url=database_url, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "edited" not in status.stdout


def test_a_semantic_edit_blocks_until_repaired_with_a_reason(tmp_path, database_url):
    root, env = _shadow(tmp_path)
    assert _db("upgrade", "heads", url=database_url, env=env).returncode == 0
    (path,) = (root / "catalog/migrations").glob(f"{CATALOG_FIRST}_*.py")
    path.write_text(path.read_text().replace("def upgrade", "# reviewed\ndef upgrade"))

    assert _db("status", url=database_url, env=env).returncode == 4
    blocked = _db("status", url=database_url, env=env)
    assert f"tecnorev db repair {CATALOG_FIRST} --reason" in blocked.stdout

    short = _db("repair", CATALOG_FIRST, "--reason", "ok", url=database_url, env=env)
    assert short.returncode == 1
    assert "a reason of at least 10 characters" in short.stderr
    unknown = _db("repair", "catalog_000000000000", "--reason", "x" * 12, url=database_url, env=env)
    assert unknown.returncode == 2
    assert "no installed revision is named 'catalog_000000000000'" in unknown.stderr
    assert _db("status", url=database_url, env=env).returncode == 4  # nothing was recorded

    reason = "comment added after review; the statements are unchanged"
    repaired = _db("repair", CATALOG_FIRST, "--reason", reason, url=database_url, env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert f"recorded the edit of {CATALOG_FIRST}" in repaired.stdout
    assert _db("status", url=database_url, env=env).returncode == 0

    (row,) = [r for r in _log(database_url, env) if r["direction"] == "repair"]
    assert (row["revision"], row["module"], row["note"]) == (CATALOG_FIRST, "catalog", reason)
    assert row["user"] and row["at"]
    table = _db("log", "catalog", url=database_url, env=env)
    assert reason in table.stdout

    again = _db("repair", CATALOG_FIRST, "--reason", reason, url=database_url, env=env)
    assert again.returncode == 0
    assert "nothing to repair" in again.stdout
    # an edit after the repair is an edit again
    path.write_text(path.read_text().replace("# reviewed", "# reviewed twice"))
    assert _db("status", url=database_url, env=env).returncode == 4


FAILING = '''"""a revision that fails

Revision ID: catalog_fa11edfa11ed
Revises: {parent}
Create Date: 2026-12-05 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "catalog_fa11edfa11ed"
down_revision = "{parent}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("product", sa.Column("weight_grams", sa.Integer(), nullable=True))
    op.execute("SELECT * FROM no_such_table")


def downgrade() -> None:
    op.drop_column("product", "weight_grams")
'''


def test_a_failed_attempt_is_in_the_log_and_nothing_of_it_is_kept(tmp_path, database_url):
    root, env = _shadow(tmp_path)
    assert _db("upgrade", "heads", url=database_url, env=env).returncode == 0
    heads = _db("heads", url=database_url, env=env).stdout
    (parent,) = [line.split()[0] for line in heads.splitlines() if line.startswith("catalog_")]
    (root / "catalog/migrations/catalog_fa11edfa11ed_fails.py").write_text(
        FAILING.format(parent=parent)
    )

    failed = _db("upgrade", "heads", url=database_url, env=env)
    assert failed.returncode != 0
    (row,) = [r for r in _log(database_url, env) if r["direction"].startswith("failed")]
    assert row["direction"] == "failed-upgrade"
    assert (row["revision"], row["module"]) == ("catalog_fa11edfa11ed", "catalog")
    assert "no_such_table" in row["note"]
    assert row["user"] and row["host"] and row["at"]
    engine = sa.create_engine(database_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns("product")}
    finally:
        engine.dispose()
    assert "weight_grams" not in columns  # rolled back whole
    status = json.loads(_db("status", "--json", url=database_url, env=env).stdout)
    (catalog,) = [m for m in status["modules"] if m["module"] == "catalog"]
    assert catalog["pending"] == 1


def test_a_ledger_written_before_notes_and_normalised_checksums_still_reads(tmp_path, database_url):
    root, env = _shadow(tmp_path)
    assert _db("upgrade", "catalog@head", url=database_url, env=env).returncode == 0
    (path,) = (root / "catalog/migrations").glob(f"{CATALOG_FIRST}_*.py")
    import hashlib

    raw = hashlib.sha256(path.read_bytes()).hexdigest()
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:  # as an older release of the engine left it
            connection.execute(
                migration_log.update()
                .where(migration_log.c.revision == CATALOG_FIRST)
                .values(checksum=raw)
            )
            connection.execute(sa.text(f"ALTER TABLE {migration_log.name} DROP COLUMN note"))
    finally:
        engine.dispose()

    assert _db("status", url=database_url, env=env).returncode in (0, 1)  # pending, not edited
    assert all(r["note"] is None for r in _log(database_url, env))
    assert _db("upgrade", "heads", url=database_url, env=env).returncode == 0
    assert _db("status", url=database_url, env=env).returncode == 0
    engine = sa.create_engine(database_url)
    try:
        columns = {c["name"] for c in sa.inspect(engine).get_columns(migration_log.name)}
    finally:
        engine.dispose()
    assert "note" in columns  # brought up to date by the next run
