"""``tecnorev.migrate.zero``'s other breaking changes, all in one expand and one contract: a type
change (integer to bigint), NOT NULL on an existing column, a dropped column and a renamed table.
On PostgreSQL, between the two phases, writes in the old release's shape and in the new one's
both succeed and each is seen in the other's shape; the contract leaves the final schema with
nothing of the machinery behind (and refuses to drop an index with a column); both phases go
back down.  On SQLite the changes are made in one upgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.migrate.zero import shadow_column

from .test_phases import db, execute, ok
from .test_squash import rev, write_module, write_revision

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROWS = 1_000
SHADOW = shadow_column("zt_item", "qty")

_CREATE = """

def upgrade() -> None:
    op.create_table(
        "zt_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("qty", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("unit", sa.String(16), nullable=True),
        sa.Column("legacy", sa.Text(), nullable=False),
    )
    op.create_table(
        "zt_note",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("zt_note")
    op.drop_table("zt_item")
"""

_EXPAND = """
from tecnorev.migrate import zero


def upgrade() -> None:
    zero.change_column_type("zt_item", "qty", "bigint")
    zero.set_not_null("zt_item", "unit", fill="'each'")
    zero.drop_column("zt_item", "legacy")
    zero.rename_table("zt_note", "zt_memo")


def downgrade() -> None:
    zero.undo_rename_table("zt_note", "zt_memo")
    zero.undo_drop_column("zt_item", "legacy", fill="''")
    zero.undo_set_not_null("zt_item", "unit")
    zero.undo_change_column_type("zt_item", "qty", old_type="integer")
"""

_CONTRACT = """
from tecnorev.migrate import zero

phase = "contract"


def upgrade() -> None:
    zero.complete_change_column_type("zt_item", "qty")
    zero.complete_set_not_null("zt_item", "unit")
    zero.complete_drop_column("zt_item", "legacy")
    zero.complete_rename_table("zt_note", "zt_memo")


def downgrade() -> None:
    zero.uncomplete_rename_table("zt_note", "zt_memo")
    zero.uncomplete_drop_column("zt_item", "legacy", "text")
    zero.uncomplete_set_not_null("zt_item", "unit", fill="'each'")
    zero.uncomplete_change_column_type("zt_item", "qty", "bigint", old_type="integer")
"""

CREATE, EXPAND, CONTRACT = (rev("zt", step) for step in (1, 2, 3))


@pytest.fixture
def project(tmp_path: Path) -> dict:
    folder = write_module(tmp_path / "site", "zt")
    for step, body in enumerate((_CREATE, _EXPAND, _CONTRACT), start=1):
        write_revision(folder, "zt", step, body)
    return {"env": {"PYTHONPATH": str(tmp_path / "site")}, "cwd": tmp_path}


def seed(url: str) -> None:
    # every other row without a unit: the expand's backfill fills them
    values = ", ".join(
        f"({i}, {i * 10}, {'NULL' if i % 2 else repr('kg')}, 'old {i}')" for i in range(1, ROWS + 1)
    )
    execute(url, f"INSERT INTO zt_item (id, qty, unit, legacy) VALUES {values}")
    execute(url, "INSERT INTO zt_note (body) VALUES ('first')")


def columns(url: str, table: str = "zt_item") -> dict[str, tuple[str, bool]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {
                c["name"]: (str(c["type"]).split("(")[0], c["nullable"])
                for c in sa.inspect(connection).get_columns(table)
            }
    finally:
        engine.dispose()


def machinery(url: str) -> tuple[int, int]:
    """Triggers and CHECK constraints left on zt_item."""
    triggers = execute(url, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'zt_item'::regclass "
                       "AND NOT tgisinternal")  # fmt: skip
    checks = execute(url, "SELECT count(*) FROM pg_constraint WHERE conrelid = "
                     "'zt_item'::regclass AND contype = 'c'")  # fmt: skip
    return triggers[0][0], checks[0][0]


def test_old_and_new_shapes_both_work_between_expand_and_contract(
    project: dict, postgres_url: str
) -> None:
    url = postgres_url
    linted = ok(project, url, "lint", "zt")
    assert "clean" in linted.stdout, linted.stdout
    ok(project, url, "upgrade", f"zt@{CREATE}")
    seed(url)
    ok(project, url, "upgrade", "heads", "--no-backfill")  # expand
    # before the backfills reach it, a row updated by either release passes the NOT NULL checks
    execute(url, "UPDATE zt_item SET legacy = 'touched' WHERE id = 3")
    assert execute(url, f"SELECT {SHADOW}, unit FROM zt_item WHERE id = 3") == [(30, "each")]
    ok(project, url, "backfill", "run")
    assert columns(url)["legacy"] == ("TEXT", True)  # the new release no longer writes it
    assert columns(url)[SHADOW] == ("BIGINT", True)
    assert execute(url, f"SELECT count(*) FROM zt_item WHERE {SHADOW} = qty") == [(ROWS,)]
    assert execute(url, "SELECT count(*) FROM zt_item WHERE unit IS NULL") == [(0,)]
    assert execute(url, "SELECT count(*) FROM zt_item WHERE unit = 'each'") == [(ROWS // 2,)]

    # the old release: its shape (no unit, legacy written, the old table name)
    execute(url, "INSERT INTO zt_item (id, qty, legacy) VALUES (5001, 7, 'old')")
    execute(url, "UPDATE zt_item SET qty = 70 WHERE id = 2")
    old_note = execute(url, "INSERT INTO zt_note (body) VALUES ('old release') RETURNING id")
    assert execute(url, "SELECT body FROM zt_note WHERE id = 1 FOR UPDATE") == [("first",)]
    # the new release: unit written, legacy not, the new table name
    execute(url, "INSERT INTO zt_item (id, qty, unit) VALUES (5002, 5, 'box')")
    execute(url, "INSERT INTO zt_memo (id, body) VALUES (1000, 'new release')")
    execute(url, "UPDATE zt_item SET unit = NULL WHERE id = 4")  # still no NULL
    rows = execute(
        url, f"SELECT id, qty, {SHADOW}, unit FROM zt_item WHERE id IN (2, 4, 5001, 5002)"
    )
    assert sorted(rows) == [(2, 70, 70, "kg"), (4, 40, 40, "each"), (5001, 7, 7, "each"),
                            (5002, 5, 5, "box")]  # fmt: skip
    assert execute(url, "SELECT body FROM zt_memo WHERE id = :id", id=old_note[0][0]) == [
        ("old release",)
    ]
    assert execute(url, "SELECT body FROM zt_note WHERE id = 1000") == [("new release",)]

    execute(url, "CREATE INDEX zt_item_qty ON zt_item (qty)")
    refused = db(project, url, "contract")
    assert refused.returncode != 0
    assert "would also drop: index zt_item_qty" in refused.stdout + refused.stderr
    execute(url, "DROP INDEX zt_item_qty")

    ok(project, url, "contract")
    assert columns(url) == {"id": ("INTEGER", False), "qty": ("BIGINT", False),
                            "unit": ("VARCHAR", False)}  # fmt: skip
    assert machinery(url) == (0, 0)
    assert execute(url, "SELECT count(*) FROM pg_views WHERE viewname = 'zt_note'") == [(0,)]
    execute(url, "INSERT INTO zt_item (id, unit) VALUES (5003, 'm')")  # the default moved
    assert execute(url, "SELECT qty FROM zt_item WHERE id IN (2, 5003) ORDER BY id") == [
        (70,),
        (0,),
    ]
    assert execute(url, "SELECT count(*) FROM zt_memo") == [(3,)]

    ok(project, url, "downgrade", f"zt@{EXPAND}")  # both shapes again, kept in sync
    assert columns(url)["qty"] == ("INTEGER", False)
    execute(url, "INSERT INTO zt_item (id, qty, legacy) VALUES (5004, 4, 'old again')")
    assert execute(url, f"SELECT {SHADOW}, unit FROM zt_item WHERE id = 5004") == [(4, "each")]
    assert execute(url, "SELECT body FROM zt_note WHERE id = 1") == [("first",)]
    ok(project, url, "downgrade", f"zt@{CREATE}", "--yes")
    assert columns(url) == {"id": ("INTEGER", False), "qty": ("INTEGER", False),
                            "unit": ("VARCHAR", True), "legacy": ("TEXT", False)}  # fmt: skip
    assert machinery(url) == (0, 0)
    assert execute(url, "SELECT count(*) FROM zt_item") == [(ROWS + 4,)]
    assert execute(url, "SELECT count(*) FROM zt_note") == [(3,)]


def test_sqlite_makes_the_changes_in_one_upgrade(project: dict, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    ok(project, url, "upgrade", f"zt@{CREATE}")
    seed(url)
    ok(project, url, "upgrade", "heads")
    assert columns(url) == {"id": ("INTEGER", False), "qty": ("BIGINT", False),
                            "unit": ("VARCHAR", False)}  # fmt: skip
    assert execute(url, "SELECT count(*) FROM zt_item WHERE unit = 'each'") == [(ROWS // 2,)]
    assert execute(url, "SELECT body FROM zt_memo") == [("first",)]
    ok(project, url, "downgrade", f"zt@{CREATE}", "--yes")
    assert set(columns(url)) == {"id", "qty", "unit", "legacy"}
    assert execute(url, "SELECT count(*) FROM zt_note") == [(1,)]
