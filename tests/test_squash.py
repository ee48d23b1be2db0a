"""``tecnorev db squash``: a module with 200 revisions becomes one revision that ``replaces``
them.  Databases stopped at revision 0, 57 and 200 all reach the head (a revision written after
the squash) and hold the same schema and rows; another module's ``depends_on`` into the range
follows the squash; the data migration in the range is refused until kept explicitly; once the
originals are deleted, a database on the last of them is recorded as standing on the squash,
and one partway through is refused with what to install.  On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import run_tecnorev

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REVISIONS = 200
DATA_STEP = 100  # the revision that writes rows
DEPENDED_ON = 120  # the revision of the range that the second module depends on

_HEAD = '''"""{title}

Revision ID: {revision}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down_repr}
branch_labels = {labels}
depends_on = {depends}
'''

_CREATE = """

def upgrade() -> None:
    op.create_table(
        "sq_item",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sq_item")
"""

_COLUMN = """

def upgrade() -> None:
    op.add_column("sq_item", sa.Column("{column}", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sq_item") as batch:
        batch.drop_column("{column}")
"""

_TABLE = """

def upgrade() -> None:
    op.create_table(
        "{table}",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("sq_item.id"), nullable=False),
    )
    op.create_index("ix_{table}_item_id", "{table}", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_{table}_item_id", table_name="{table}")
    op.drop_table("{table}")
"""

_DATA = """

def upgrade() -> None:
    op.execute("INSERT INTO sq_item (id, name) VALUES (1, 'seeded by a data migration')")


def downgrade() -> None:
    op.execute("DELETE FROM sq_item WHERE id = 1")
"""


def rev(module: str, step: int) -> str:
    return f"{module}_{hashlib.sha1(f'{module}/{step}'.encode()).hexdigest()[:12]}"


def write_revision(folder: Path, module: str, step: int, body: str, **head: object) -> str:
    revision = rev(module, step)
    down = head.pop("down", rev(module, step - 1) if step > 1 else None)
    text = _HEAD.format(
        title=head.pop("title", f"{module} step {step}"),
        revision=revision,
        down=down or "",
        down_repr=repr(down),
        labels=repr((module,)) if step == 1 else None,
        depends=repr(head.pop("depends", None)),
    )
    (folder / f"{revision}_step_{step:03d}.py").write_text(text + body)
    return revision


def body_of(step: int) -> str:
    if step == 1:
        return _CREATE
    if step == DATA_STEP:
        return _DATA
    if step % 2:
        return _TABLE.format(table=f"sq_t{step:03d}")
    return _COLUMN.format(column=f"c{step:03d}")


def write_module(site: Path, module: str, depends_on: tuple[str, ...] = ()) -> Path:
    """An installed-looking module: package, descriptor, entry point (as pip leaves them)."""
    package = f"squashtest_{module}"
    folder = site / package / "migrations"
    folder.mkdir(parents=True)
    (site / package / "__init__.py").write_text(
        "from tecnorev.core.module import Module\n\n"
        f"module = Module(name={module!r}, package={package!r}, depends_on={depends_on!r})\n"
    )
    (site / package / "models.py").write_text('"""No table classes."""\n')
    dist_info = site / f"squashtest_{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: squashtest-{module}\nVersion: 1.0\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[tecnorev.modules]\n{module} = {package}:module\n"
    )
    return folder


@pytest.fixture
def history(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    sq = write_module(site, "sq")
    for step in range(1, REVISIONS + 1):
        write_revision(sq, "sq", step, body_of(step))
    other = write_module(site, "sqx", depends_on=("sq",))
    write_revision(
        other,
        "sqx",
        1,
        _TABLE.format(table="sqx_link"),
        depends=(rev("sq", DEPENDED_ON),),
    )
    return {"env": {"PYTHONPATH": str(site)}, "sq": sq, "cwd": tmp_path}


def db(history: dict, url: str, *args: str):
    return run_tecnorev("db", *args, url=url, env=history["env"], cwd=history["cwd"], timeout=600)


def ok(history: dict, url: str, *args: str) -> str:
    result = db(history, url, *args)
    assert result.returncode == 0, (
        f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def module_status(history: dict, url: str, module: str) -> tuple[int, dict]:
    result = db(history, url, "status", "--json")
    report = json.loads(result.stdout)
    return result.returncode, next(m for m in report["modules"] if m["module"] == module)


def versions(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return {
                r[0] for r in connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            }
    finally:
        engine.dispose()


def test_a_long_history_is_squashed_and_every_database_reaches_the_head(
    history: dict, database_url: str
) -> None:
    from contextlib import ExitStack

    from tecnorev.migrate.scratch import differences, scratch_database, snapshot
    from tecnorev.migrate.verify import BOOKKEEPING_TABLES

    sq = history["sq"]
    tip = rev("sq", REVISIONS)
    with ExitStack() as stack:
        other = [stack.enter_context(scratch_database(database_url)) for _ in range(4)]
        at_0, at_57, at_200 = database_url, other[0], other[1]
        at_57_late, at_200_late = other[2], other[3]  # upgraded after the originals are gone
        for url in (at_57, at_57_late):
            ok(history, url, "upgrade", f"sq@{rev('sq', 57)}")
        for url in (at_200, at_200_late):
            ok(history, url, "upgrade", f"sq@{tip}")

        # the data migration in the range is never dropped silently
        refused = db(history, database_url, "squash", "sq")
        assert refused.returncode == 1
        assert rev("sq", DATA_STEP) in refused.stderr and "--keep-data" in refused.stderr
        assert not list(sq.glob("*_squash.py"))

        squashed = ok(history, database_url, "squash", "sq", "--keep-data")
        assert f"replaces {REVISIONS} revisions" in squashed
        assert "checked: both build the same schema and rows" in squashed
        (squash_file,) = sq.glob("*_squash.py")
        squash_id = re.search(r'^revision = "(\w+)"', squash_file.read_text(), re.M).group(1)
        replaced = re.findall(r'^    "(sq_\w+)",$', squash_file.read_text(), re.M)
        assert replaced == [rev("sq", s) for s in range(1, REVISIONS + 1)]

        # the next release: a revision after the range, written against the last original
        write_revision(sq, "sq", REVISIONS + 1, _COLUMN.format(column="note"), title="sq note")
        head = rev("sq", REVISIONS + 1)

        # each database sees the side it needs: partway, the originals still to run
        assert module_status(history, at_57, "sq")[1]["pending"] == REVISIONS - 57 + 1
        assert module_status(history, at_200, "sq")[1]["pending"] == 1
        assert module_status(history, at_0, "sq")[1]["pending"] == 2  # the squash, then note

        for url in (at_0, at_57, at_200):
            ok(history, url, "upgrade", "heads")
            code, sq_row = module_status(history, url, "sq")
            assert (code, sq_row["state"]) == (0, "up to date"), sq_row
            assert head in versions(url)
        fresh = json.loads(ok(history, at_0, "log", "sq", "--json"))
        assert [r["revision"] for r in fresh] == [squash_id, head]
        partway = json.loads(ok(history, at_57, "log", "sq", "--json"))
        assert [r["revision"] for r in partway][-2:] == [tip, head]

        schemas = [snapshot(url, BOOKKEEPING_TABLES) for url in (at_0, at_57, at_200)]
        assert "sq_item" in schemas[0] and "sqx_link" in schemas[0]
        assert "seeded by a data migration" in "".join(schemas[0]["sq_item"]["rows"])
        assert differences(schemas[0], schemas[1]) == []
        assert differences(schemas[0], schemas[2]) == []

        verified = json.loads(db(history, at_0, "verify", "--json").stdout)
        (check,) = [c for c in verified["checks"] if c["name"] == "squashes"]
        assert check["status"] == "ok" and squash_id in check["note"], check

        # the originals are deleted: the last one's database now stands on the squash
        for step in range(1, REVISIONS + 1):
            next(sq.glob(f"{rev('sq', step)}_*.py")).unlink()
        upgraded = ok(history, at_200_late, "upgrade", "heads")
        assert "is recorded as the squash" in upgraded
        assert versions(at_200_late) >= {head}
        assert module_status(history, at_200_late, "sq")[0] == 0
        stamped = json.loads(ok(history, at_200_late, "log", "sq", "--json"))
        assert (stamped[-2]["revision"], stamped[-2]["direction"]) == (squash_id, "stamp-upgrade")
        assert differences(schemas[0], snapshot(at_200_late, BOOKKEEPING_TABLES)) == []

        # ... and one partway through is refused, naming what to install, and left as it was
        code, stranded = module_status(history, at_57_late, "sq")
        assert (code, stranded["state"]) == (5, "inside a squashed range"), stranded
        assert "still ships the originals" in stranded["note"]
        stuck = db(history, at_57_late, "upgrade", "heads")
        assert stuck.returncode != 0
        assert "inside the range" in stuck.stderr and "still ships the originals" in stuck.stderr
        assert versions(at_57_late) == {rev("sq", 57)}


def test_squashing_refuses_what_it_cannot_carry(history: dict, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'squash.db'}"
    sq = history["sq"]
    unknown = db(history, url, "squash", "nosuch")
    assert unknown.returncode == 2 and "no installed module named 'nosuch'" in unknown.stderr

    lone = db(history, url, "squash", "sqx")
    assert lone.returncode == 1 and "nothing to squash" in lone.stderr

    # top-level code that ran on import cannot be moved into one file
    path = next(sq.glob(f"{rev('sq', 3)}_*.py"))
    path.write_text(path.read_text() + "\nprint('imported')\n")
    refused = db(history, url, "squash", "sq", "--to", rev("sq", 10))
    assert refused.returncode == 1 and "top-level code" in refused.stderr
    assert str(path) in refused.stderr
    assert not list(sq.glob("*_squash.py"))


def test_the_shipped_modules_squash_to_the_same_database(postgres_url: str, tmp_path: Path) -> None:
    """auth (its grants are data migrations), inventory and sales (PostgreSQL-only checks and
    a data migration), squashed in copies of their sources: verify compares each squash with its
    originals on PostgreSQL, and a database migrated through the originals before the squash
    carries on with the same schema and rows as a fresh one."""
    from tecnorev.migrate.scratch import differences, scratch_database, snapshot
    from tecnorev.migrate.verify import BOOKKEEPING_TABLES

    src = tmp_path / "src"
    repo = Path(__file__).resolve().parents[1]
    for name in ("auth", "inventory", "sales"):
        shutil.copytree(
            repo / "packages" / name / "src" / "tecnorev" / name,
            src / "tecnorev" / name,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    history = {"env": {"PYTHONPATH": str(src)}, "cwd": tmp_path}
    ok(history, postgres_url, "upgrade", "heads")  # through the originals
    for name in ("auth", "inventory", "sales"):
        assert "replaces" in ok(history, postgres_url, "squash", name, "--keep-data")
        assert len(list((src / "tecnorev" / name / "migrations").glob("*_squash.py"))) == 1

    verified = json.loads(db(history, postgres_url, "verify", "--postgres", "--json").stdout)
    failed = {c["name"]: c for c in verified["checks"] if c["status"] == "failed"}
    # A squash stands for the last revision it replaces, which shipped in 0.1.1 here (the
    # listing indexes): what depended on an earlier revision of it now needs that release.
    # Only that may fail: the squashes themselves build what their originals build.
    assert set(failed) <= {"depends_on"}, failed
    for problem in failed.get("depends_on", {"problems": []})["problems"]:
        assert "first ships in 0.1.1" in problem["message"], problem
        assert ">=0.1.1' in the dependencies of" in problem["message"], problem
    (check,) = [c for c in verified["checks"] if c["name"] == "squashes"]
    assert check["status"] == "ok", check
    assert all(f"{name}_" in check["note"] for name in ("auth", "inventory", "sales")), check

    assert json.loads(ok(history, postgres_url, "status", "--json"))["exit_code"] == 0
    with scratch_database(postgres_url) as fresh:
        ok(history, fresh, "upgrade", "heads")
        log = json.loads(ok(history, fresh, "log", "sales", "--json"))
        assert [r["revision"] for r in log] == [
            next((src / "tecnorev/sales/migrations").glob("*_squash.py")).name[:18]
        ]
        assert (
            differences(
                snapshot(postgres_url, BOOKKEEPING_TABLES), snapshot(fresh, BOOKKEEPING_TABLES)
            )
            == []
        )
