"""Going back to an older release of a module: a newer sales (a copy of its source with two
more revisions, first on the path) migrates the database; then the installed, older sales
finds the database ahead, says which command takes it back, and that command runs the stored
``downgrade()`` of the revisions whose files it lacks.  On PostgreSQL and SQLite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sqlalchemy as sa

from tecnorev.testing.core import module_heads, run_tecnorev

REPO = Path(__file__).resolve().parents[1]
SALES_HEAD = module_heads()["sales"]
NOTE = "sales_0a0a0a0a0a01"
LIMIT = "sales_0a0a0a0a0a02"

REVISION = '''"""{message}

Revision ID: {revision}
Revises: {down}
Create Date: 2026-12-05 12:00:00
"""

import sqlalchemy as sa
from alembic import op
{extra_import}
revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("coupon", sa.Column("{column}", {type_}, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("coupon") as batch:
        batch.drop_column("{column}")
'''


def _newer_sales(tmp_path: Path, *, helper_import: bool = False) -> dict[str, str]:
    """sales 0.2.0's source: two revisions more, the second optionally importing a module
    that only 0.2.0 ships."""
    src = tmp_path / "newer"
    root = src / "tecnorev/sales"
    shutil.copytree(
        REPO / "packages/sales/src/tecnorev/sales",
        root,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (root / "loyalty_rules.py").write_text("POINTS_PER_EURO = 1\n")
    migrations = root / "migrations"
    (migrations / f"{NOTE}_coupon_note.py").write_text(
        REVISION.format(
            message="coupon note", revision=NOTE, down=SALES_HEAD, column="note",
            type_="sa.String(200)", extra_import="",
        )
    )  # fmt: skip
    (migrations / f"{LIMIT}_coupon_limit.py").write_text(
        REVISION.format(
            message="coupon limit", revision=LIMIT, down=NOTE, column="max_uses",
            type_="sa.Integer()",
            extra_import="import tecnorev.sales.loyalty_rules  # noqa: F401\n" if helper_import else "",
        )
    )  # fmt: skip
    return {"PYTHONPATH": str(src)}


def _columns(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return {c["name"] for c in sa.inspect(engine).get_columns("coupon")}
    finally:
        engine.dispose()


def _status(url: str) -> tuple[int, dict]:
    result = run_tecnorev("db", "status", "--json", url=url)
    return result.returncode, json.loads(result.stdout)


def test_the_older_release_runs_the_stored_downgrade(tmp_path, database_url):
    newer = _newer_sales(tmp_path)
    upgraded = run_tecnorev("db", "upgrade", "heads", url=database_url, env=newer)
    assert upgraded.returncode == 0, upgraded.stderr
    assert {"note", "max_uses"} <= _columns(database_url)

    # the installed sales is the older release
    code, report = _status(database_url)
    assert code == 5
    (sales,) = [m for m in report["modules"] if m["module"] == "sales"]
    assert sales["state"] == "database ahead of code"
    assert (sales["back_to"], sales["back_refused"]) == (SALES_HEAD, None)
    shown = run_tecnorev("db", "status", url=database_url)
    assert f"or go back to this version: tecnorev db downgrade sales@{SALES_HEAD}" in shown.stdout

    relative = run_tecnorev("db", "downgrade", "sales@-1", url=database_url)
    assert relative.returncode != 0
    assert f"name the revision to go back to, such as sales@{SALES_HEAD}" in relative.stderr

    back = run_tecnorev("db", "downgrade", f"sales@{SALES_HEAD}", url=database_url)
    assert back.returncode == 0, back.stderr
    assert f"sales: ran the stored downgrade() of {LIMIT}, {NOTE}" in back.stdout
    assert not {"note", "max_uses"} & _columns(database_url)
    code, report = _status(database_url)
    assert code == 0, report

    log = json.loads(run_tecnorev("db", "log", "sales", "--json", url=database_url).stdout)
    downs = [(r["revision"], r["direction"], r["note"]) for r in log][-2:]
    stored = "ran the stored downgrade(): its file is not installed"
    assert downs == [(LIMIT, "downgrade", stored), (NOTE, "downgrade", stored)]

    # the older release works on the database, and the newer one upgrades it again
    assert run_tecnorev("db", "check", url=database_url).returncode == 0
    again = run_tecnorev("db", "upgrade", "heads", url=database_url, env=newer)
    assert again.returncode == 0, again.stderr
    assert {"note", "max_uses"} <= _columns(database_url)


def test_a_stored_revision_importing_what_is_gone_is_refused(tmp_path, database_url):
    newer = _newer_sales(tmp_path, helper_import=True)
    assert run_tecnorev("db", "upgrade", "heads", url=database_url, env=newer).returncode == 0

    code, report = _status(database_url)
    assert code == 5
    (sales,) = [m for m in report["modules"] if m["module"] == "sales"]
    reason = (
        f"the stored {LIMIT} imports tecnorev.sales.loyalty_rules, which is not installed now: "
        f"install the release of sales that ships {LIMIT} to downgrade with it, or install "
        "what it imports"
    )
    assert sales["back_refused"] == reason
    refused = run_tecnorev("db", "downgrade", f"sales@{SALES_HEAD}", url=database_url)
    assert refused.returncode != 0
    assert reason in refused.stderr
    assert {"note", "max_uses"} <= _columns(database_url)  # nothing was run

    # with the newer release installed again, its files do the downgrade as usual
    back = run_tecnorev("db", "downgrade", f"sales@{SALES_HEAD}", url=database_url, env=newer)
    assert back.returncode == 0, back.stderr
    assert not {"note", "max_uses"} & _columns(database_url)


def test_a_stored_source_that_was_altered_is_refused(tmp_path, database_url):
    newer = _newer_sales(tmp_path)
    assert run_tecnorev("db", "upgrade", "heads", url=database_url, env=newer).returncode == 0

    # someone rewrites the stored text: its downgrade() would no longer be what was applied
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "UPDATE tecnorev_revision_source SET source = "
                    "replace(source, 'batch.drop_column', 'batch.drop_column  # ') "
                    "WHERE revision = :revision"
                ),
                {"revision": LIMIT},
            )
    finally:
        engine.dispose()

    code, report = _status(database_url)
    assert code == 5
    (sales,) = [m for m in report["modules"] if m["module"] == "sales"]
    assert sales["back_refused"].startswith(
        f"the stored source of {LIMIT} was changed after it was stored (sha256 "
    )
    assert sales["back_refused"].endswith(
        f"install the release of sales that ships {LIMIT} to downgrade with its file"
    )
    refused = run_tecnorev("db", "downgrade", f"sales@{SALES_HEAD}", url=database_url)
    assert refused.returncode != 0
    assert f"the stored source of {LIMIT} was changed after it was stored" in refused.stderr
    assert {"note", "max_uses"} <= _columns(database_url)  # nothing was run
