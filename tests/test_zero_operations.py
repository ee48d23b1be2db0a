"""``tecnorev.migrate.zero``: a column renamed in two phases.  On PostgreSQL, between expand and
contract, the old release (writing ``name``) and the new one (writing ``title``) each read the
other's inserts and updates, the rows already there are backfilled, and NOT NULL holds for
both; the contract leaves ``title`` alone, NOT NULL, with no trigger or check left; both phases
go back down.  On SQLite the column is simply renamed."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from .test_phases import execute, ok
from .test_squash import rev, write_module, write_revision

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROWS = 1_000

_CREATE = """

def upgrade() -> None:
    op.create_table(
        "zr_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("zr_item")
"""

_EXPAND = """
from tecnorev.migrate import zero


def upgrade() -> None:
    zero.rename_column("zr_item", "name", "title")


def downgrade() -> None:
    zero.undo_rename_column("zr_item", "name", "title")
"""

_CONTRACT = """
from tecnorev.migrate import zero

phase = "contract"


def upgrade() -> None:
    zero.complete_rename_column("zr_item", "name", "title")


def downgrade() -> None:
    zero.uncomplete_rename_column("zr_item", "name", "title")
"""

CREATE, EXPAND, CONTRACT = (rev("zr", step) for step in (1, 2, 3))


@pytest.fixture
def project(tmp_path: Path) -> dict:
    folder = write_module(tmp_path / "site", "zr")
    for step, body in enumerate((_CREATE, _EXPAND, _CONTRACT), start=1):
        write_revision(folder, "zr", step, body)
    return {"env": {"PYTHONPATH": str(tmp_path / "site")}, "cwd": tmp_path}


def seed(url: str) -> None:
    values = ", ".join(f"({i}, 'item {i}')" for i in range(1, ROWS + 1))
    execute(url, f"INSERT INTO zr_item (id, name) VALUES {values}")


def shape(url: str) -> dict[str, bool]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {c["name"]: c["nullable"] for c in sa.inspect(connection).get_columns("zr_item")}
    finally:
        engine.dispose()


def test_both_releases_see_each_others_writes_between_expand_and_contract(
    project: dict, postgres_url: str
) -> None:
    url = postgres_url
    # offline, the expand renders as SQL (the operations ask the catalog in SQL, not Python)
    # and the contract is held back; lint reads the operations and finds nothing to flag
    planned = ok(project, url, "upgrade", "heads", "--sql")
    assert "CREATE TRIGGER tr_sync_zr_item_title_" in planned.stdout
    assert "INSERT INTO tecnorev_backfill" in planned.stdout
    assert "DROP COLUMN name" not in planned.stdout
    assert f"held back contract revision(s) {CONTRACT}" in planned.stderr
    linted = ok(project, url, "lint", "zr")
    assert "clean" in linted.stdout, linted.stdout
    ok(project, url, "upgrade", f"zr@{CREATE}")
    seed(url)
    ok(project, url, "upgrade", "heads", "--no-backfill")  # expand
    # before the backfill reaches it, an update of other columns passes the NOT NULL check
    execute(url, "UPDATE zr_item SET id = 9003 WHERE id = 3")
    execute(url, "UPDATE zr_item SET id = 3 WHERE id = 9003")
    assert execute(url, "SELECT title FROM zr_item WHERE id = 3") == [("item 3",)]
    ok(project, url, "backfill", "run")
    assert shape(url) == {"id": False, "name": False, "title": True}
    assert execute(url, "SELECT count(*) FROM zr_item WHERE title = name") == [(ROWS,)]

    execute(url, "INSERT INTO zr_item (id, name) VALUES (5001, 'from the old release')")
    execute(url, "INSERT INTO zr_item (id, title) VALUES (5002, 'from the new release')")
    execute(url, "UPDATE zr_item SET name = 'old renames' WHERE id = 1")
    execute(url, "UPDATE zr_item SET title = 'new renames' WHERE id = 2")
    rows = execute(url, "SELECT id, name, title FROM zr_item WHERE id IN (1, 2, 5001, 5002)")
    assert sorted(rows) == [
        (1, "old renames", "old renames"),
        (2, "new renames", "new renames"),
        (5001, "from the old release", "from the old release"),
        (5002, "from the new release", "from the new release"),
    ]
    with pytest.raises(sa.exc.IntegrityError, match=r"null value in column"):
        execute(url, "INSERT INTO zr_item (id) VALUES (5003)")  # NOT NULL holds for both

    ok(project, url, "contract")
    assert shape(url) == {"id": False, "title": False}
    assert execute(url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'zr_item'::regclass "
                   "AND NOT tgisinternal") == [(0,)]  # fmt: skip
    assert execute(url, "SELECT count(*) FROM pg_constraint WHERE conrelid = "
                   "'zr_item'::regclass AND contype = 'c'") == [(0,)]  # fmt: skip
    assert execute(url, "SELECT title FROM zr_item WHERE id = 5002") == [("from the new release",)]

    ok(project, url, "downgrade", f"zr@{EXPAND}")  # back to both columns, in sync again
    assert shape(url) == {"id": False, "name": False, "title": True}
    execute(url, "INSERT INTO zr_item (id, name) VALUES (5004, 'old again')")
    assert execute(url, "SELECT title FROM zr_item WHERE id = 5004") == [("old again",)]
    ok(project, url, "downgrade", f"zr@{CREATE}", "--yes")
    assert shape(url) == {"id": False, "name": False}
    assert execute(url, "SELECT count(*) FROM zr_item") == [(ROWS + 3,)]


def test_sqlite_renames_in_one_step(project: dict, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    ok(project, url, "upgrade", f"zr@{CREATE}")
    seed(url)
    ok(project, url, "upgrade", "heads")
    assert shape(url) == {"id": False, "title": False}
    assert execute(url, "SELECT count(*) FROM zr_item WHERE title = 'item ' || id") == [(ROWS,)]
    ok(project, url, "downgrade", f"zr@{CREATE}", "--yes")
    assert shape(url) == {"id": False, "name": False}
