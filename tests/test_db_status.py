"""``tecnorev db status``: one row per module, and an exit code a deploy can gate on."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.core.types import utcnow
from tecnorev.migrate.ledger import migration_log
from tecnorev.migrate.status import ExitCode
from tecnorev.testing.core import installed_revisions, migrate, module_heads, run_tecnorev

REPO = Path(__file__).resolve().parents[1]
MODULES = ["auth", "core", "catalog", "inventory", "sales", "logistics", "payments"]
HEADS = module_heads()
CATALOG_VERSION = version("tecnorev-catalog")
REVISIONS = len(installed_revisions())


def status(url: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = run_tecnorev("db", "status", "--json", url=url, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def rows(report: dict) -> dict[str, dict]:
    return {row["module"]: row for row in report["modules"]}


def record_applied(url: str, revision: str, module: str, parents: str, version: str) -> None:
    """What a newer code base (or a module since uninstalled) leaves in the database."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})
        conn.execute(
            migration_log.insert().values(
                revision=revision,
                module=module,
                distribution_version=version,
                direction="upgrade",
                parents=parents,
                checksum="0" * 64,
                at=utcnow(),
                host="elsewhere",
                os_user="deploy",
                duration_ms=5,
            )
        )
    engine.dispose()


def test_a_fresh_database_is_pending_and_is_not_created(database_url):
    code, report = status(database_url)
    assert code == ExitCode.PENDING == 1
    assert report["exit_code"] == 1 and report["ready"] is False
    assert list(rows(report)) == MODULES
    auth = rows(report)["auth"]
    assert auth == {
        "module": "auth",
        "state": "pending",
        "installed": True,
        "distribution": "tecnorev-auth",
        "version": "0.1.1",
        "database_revisions": [],
        "code_heads": [HEADS["auth"]],
        "pending": 6,
        "pending_revisions": [
            "auth_9745703af63a",
            "auth_262deabaa823",
            "auth_8c5580aaf960",
            "auth_346926648806",
            "auth_68f68bf2a9a1",
            "auth_0d06fa2a264a",
        ],
        "edited_revisions": [],
        "back_to": None,
        "back_refused": None,
        "note": None,
        "contract_revisions": [],
    }
    assert all(row["state"] == "pending" for row in report["modules"])

    result = run_tecnorev("db", "status", url=database_url)
    assert result.returncode == 1
    modules = "auth, core, catalog, inventory, sales, logistics, payments"
    assert f"{REVISIONS} revision(s) pending in {modules}: " in result.stdout
    assert "tecnorev db upgrade heads" in result.stdout
    if database_url.startswith("sqlite"):
        assert "(no database file yet)" in result.stdout
        assert not Path(sa.make_url(database_url).database).exists()


def test_up_to_date_after_upgrade_heads(database_url):
    assert run_tecnorev("db", "upgrade", "heads", url=database_url).returncode == 0
    code, report = status(database_url)
    assert code == 0
    assert report["ready"] is True
    for name, row in rows(report).items():
        assert row["state"] == "up to date"
        assert row["database_revisions"] == row["code_heads"] == [HEADS[name]]
        assert row["pending"] == 0

    result = run_tecnorev("db", "status", url=database_url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[1]
    assert header.split() == ["MODULE", "VERSION", "DATABASE", "CODE", "HEAD", "PENDING", "STATE"]
    table = lines[1:9]
    # aligned: every column starts where its heading does
    for heading in ("VERSION", "DATABASE", "CODE HEAD", "STATE"):
        column = header.index(heading)
        assert all(line[column - 2 : column] == "  " for line in table[1:]), heading
    assert re.search(
        rf"^catalog\s+{re.escape(CATALOG_VERSION)}\s+{HEADS['catalog']}\s+{HEADS['catalog']}\s+0\s+up to date$",
        result.stdout,
        re.M,
    )
    assert len(lines) == 9  # nothing to advise


def test_modules_above_the_one_migrated_are_pending(database_url):
    migrate(database_url, "catalog_68c333c29785")  # catalog's tables, before its grants
    code, report = status(database_url)
    assert code == 1
    states = {name: row["state"] for name, row in rows(report).items()}
    assert states == {
        "auth": "pending",
        "core": "pending",
        "catalog": "pending",
        "inventory": "pending",
        "sales": "pending",
        "logistics": "pending",
        "payments": "pending",
    }
    assert rows(report)["catalog"]["database_revisions"] == ["catalog_68c333c29785"]
    # catalog needs auth only up to the revision it depends on, not auth's later revisions
    auth = rows(report)["auth"]
    assert auth["database_revisions"] == ["auth_262deabaa823"]
    assert auth["pending_revisions"] == [
        "auth_8c5580aaf960",
        "auth_346926648806",
        "auth_68f68bf2a9a1",
        HEADS["auth"],
    ]


@pytest.fixture
def scratch_catalog(tmp_path):
    """The catalog module's source copied to a folder that shadows the installed one."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "packages/catalog/src/tecnorev/catalog",
        src / "tecnorev/catalog",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return src / "tecnorev/catalog", {"PYTHONPATH": str(src)}


def test_an_applied_file_edited_afterwards_is_reported(scratch_catalog, database_url):
    root, env = scratch_catalog
    assert run_tecnorev("db", "upgrade", "heads", url=database_url, env=env).returncode == 0
    (applied,) = (root / "migrations").glob("catalog_68c333c29785_*.py")
    applied.write_text(applied.read_text().replace("def upgrade", "# tweaked\ndef upgrade"))

    code, report = status(database_url, env)
    assert code == ExitCode.EDITED == 4
    catalog = rows(report)["catalog"]
    assert catalog["state"] == "edited since applied"
    assert catalog["pending"] == 0
    (edited,) = catalog["edited_revisions"]
    assert edited["revision"] == "catalog_68c333c29785"
    assert edited["path"] == str(applied)
    assert edited["checksum_now"] != edited["checksum_applied"]
    assert {r["state"] for n, r in rows(report).items() if n != "catalog"} == {"up to date"}
    assert report["ready"] is True  # the schema is there; what changed is the file

    result = run_tecnorev("db", "status", url=database_url, env=env)
    assert result.returncode == 4
    assert re.search(r"^catalog\s.*\s0\s+edited since applied$", result.stdout, re.M)
    assert "catalog: catalog_68c333c29785 was edited after it was applied on " in result.stdout
    assert f"({applied}). The database ran the old text: restore the file" in result.stdout


def test_a_module_recorded_in_the_database_but_not_installed(database_url):
    migrate(database_url, "heads")
    record_applied(database_url, "loyalty_0123456789ab", "loyalty", HEADS["sales"], version="0.3.0")
    # alembic's own commands cannot run; status is the one that explains
    current = run_tecnorev("db", "current", url=database_url)
    assert current.returncode != 0

    code, report = status(database_url)
    assert code == ExitCode.AHEAD == 5
    loyalty = rows(report)["loyalty"]
    assert loyalty == {
        "module": "loyalty",
        "state": "not installed",
        "installed": False,
        "distribution": None,
        "version": "0.3.0",
        "database_revisions": ["loyalty_0123456789ab"],
        "code_heads": [],
        "pending": 0,
        "pending_revisions": [],
        "edited_revisions": [],
        "back_to": None,
        "back_refused": None,
        "note": None,
        "contract_revisions": [],
    }
    assert list(rows(report))[-1] == "loyalty"
    assert {rows(report)[m]["state"] for m in MODULES} == {"up to date"}
    assert report["ready"] is True

    result = run_tecnorev("db", "status", url=database_url)
    assert result.returncode == 5
    assert re.search(
        r"^loyalty\s+0\.3\.0\s+loyalty_0123456789ab\s+-\s+-\s+not installed$", result.stdout, re.M
    )
    assert (
        "loyalty: the database records loyalty_0123456789ab, but the module is not installed: "
        "pip install tecnorev-loyalty, or set it aside with 'tecnorev db forget loyalty'."
    ) in result.stdout

    # set aside: a deliberate state, so nothing is wrong any more
    assert run_tecnorev("db", "forget", "loyalty", url=database_url).returncode == 0
    code, report = status(database_url)
    assert code == 0
    assert rows(report)["loyalty"]["state"] == "set aside"
    assert rows(report)["loyalty"]["database_revisions"] == ["loyalty_0123456789ab"]
    result = run_tecnorev("db", "status", url=database_url)
    assert re.search(
        r"^loyalty\s+0\.3\.0\s+loyalty_0123456789ab\s+-\s+-\s+set aside$", result.stdout, re.M
    )


def test_a_database_ahead_of_the_code(database_url):
    """A newer catalog was deployed and migrated; this host still runs the old code."""
    migrate(database_url, "heads")
    record_applied(
        database_url, "catalog_0123456789ab", "catalog", HEADS["catalog"], version="0.2.0"
    )
    code, report = status(database_url)
    assert code == ExitCode.AHEAD
    catalog = rows(report)["catalog"]
    assert catalog["state"] == "database ahead of code"
    assert catalog["database_revisions"] == ["catalog_0123456789ab"]
    assert catalog["code_heads"] == [HEADS["catalog"]]
    assert catalog["pending"] == 0
    assert report["ready"] is True  # DESIGN §6: a database ahead of the code still serves

    result = run_tecnorev("db", "status", url=database_url)
    assert result.returncode == 5
    assert (
        "catalog: the database has catalog_0123456789ab, which this installation of "
        f"tecnorev-catalog {CATALOG_VERSION} does not know: install the newer version"
    ) in result.stdout


def test_an_unreachable_database_exits_2_with_a_message():
    result = run_tecnorev("db", "status", url="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere")
    assert result.returncode == ExitCode.UNAVAILABLE == 3
    assert (
        "error: cannot connect to the database at postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
