"""The command line's contract (docs/cli.md): every command, mistyped, given an unknown module,
an unreachable database or a bad setting, ends with the documented exit code and an ``error:``
line, suggesting the name meant.  Plus what a user relies on besides: --version, downgrade's
--dry-run and refusal, owner-only backups, and db check telling drift from model changes."""

from __future__ import annotations

import os
import stat
import sys

import pytest
import sqlalchemy as sa

from tecnorev.migrate.exitcodes import ExitCode
from tecnorev.testing.core import migrate, run_tecnorev, schema_objects

from .test_black_hole import CASES, NO_DATABASE, cli_commands

CLOSED = "postgresql+psycopg2://postgres@127.0.0.1:1/x"  # refuses at once
FAST = {"TECNOREV_DB_CONNECT_TIMEOUT": "2"}


def typo(name: str) -> str:
    """The name with its middle letter left out ('upgrade' -> 'upgade')."""
    middle = len(name) // 2
    return name[:middle] + name[middle + 1 :]


@pytest.mark.parametrize("path", sorted(cli_commands()))
def test_a_mistyped_command_is_a_usage_error_naming_the_command_meant(path, tmp_path):
    *group, name = path.split(" ")
    result = run_tecnorev(*group, typo(name), url=f"sqlite:///{tmp_path / 'x.db'}", timeout=60)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.startswith(f"error: No such command '{typo(name)}'."), result.stderr
    assert f"'{name}'" in result.stderr.split("Did you mean", 1)[1], result.stderr


# every command taking a module name or <module>@<revision>, with "catalgo" for "catalog"
UNKNOWN_MODULE = [
    ("db", "upgrade", "catalgo@head"),
    ("db", "upgrade", "catalgo@head", "--sql"),
    ("db", "downgrade", "catalgo@base"),
    ("db", "downgrade", "catalgo@head:catalgo@base", "--sql"),
    ("db", "stamp", "catalgo@head"),
    ("db", "show", "catalgo@head"),
    ("db", "history", "-r", "catalgo@base:catalgo@head"),
    ("db", "revision", "-m", "x", "--head", "catalgo@head"),
    ("db", "merge", "-m", "x", "catalgo@head", "catalog@head"),
    ("db", "edit", "catalgo@head"),
    ("db", "generate", "catalgo", "-m", "x"),
    ("db", "sql", "catalgo"),
    ("db", "lint", "catalgo"),
    ("db", "log", "catalgo"),
    ("db", "release", "catalgo", "0.2.0"),
    ("db", "squash", "catalgo"),
    ("module", "new", "gift", "--depends-on", "catalgo"),
]


@pytest.mark.parametrize("args", UNKNOWN_MODULE, ids=" ".join)
def test_an_unknown_module_is_a_usage_error_naming_the_module_meant(args, tmp_path):
    result = run_tecnorev(
        *args, "--path", str(tmp_path), url=f"sqlite:///{tmp_path / 'x.db'}", timeout=120
    ) if args[0] == "module" else run_tecnorev(
        *args, url=f"sqlite:///{tmp_path / 'x.db'}", cwd=tmp_path, timeout=120
    )  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "Did you mean 'catalog'?" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_every_command_taking_a_module_is_covered():
    takes_module = {
        "db upgrade", "db downgrade", "db stamp", "db show", "db history", "db revision",
        "db merge", "db edit", "db generate", "db sql", "db lint", "db log", "db release",
        "db squash", "module new",
    }  # fmt: skip
    assert {" ".join(a[:2]) for a in UNKNOWN_MODULE} == takes_module


def _db_cases() -> list:
    return [c for c in CASES if c.url is None]


def _expected_unreachable(case) -> tuple[int, ...]:
    # the codes the black-hole test documents: 3, or what a command carrying on exits with
    return case.exit_codes


def _args(case, tmp_path, port: int = 0) -> list[str]:
    shown = {"tmp": tmp_path, "black_hole": CLOSED, "free_port": port or 8765}
    return [a.format(**shown) for a in case.args]


@pytest.mark.parametrize("case", _db_cases(), ids=lambda c: c.id)
def test_an_unreachable_database_exits_3_for_every_command_that_needs_it(case, tmp_path):
    result = run_tecnorev(*_args(case, tmp_path), url=CLOSED, env=FAST, timeout=60)
    assert result.returncode in _expected_unreachable(case), result.stderr
    if case.carries_on is None:
        assert result.stderr.startswith("error: cannot connect to the database at "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("case", _db_cases(), ids=lambda c: c.id)
def test_a_bad_setting_exits_3_naming_it(case, tmp_path):
    bad = {"TECNOREV_DB_CONNECT_TIMEOUT": "soon"}
    result = run_tecnorev(*_args(case, tmp_path), url=CLOSED, env=bad, timeout=60)
    if case.carries_on is not None and result.returncode in case.exit_codes:
        return  # carries on without the database, and so without its settings
    assert result.returncode == ExitCode.UNAVAILABLE, result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "TECNOREV_DB_CONNECT_TIMEOUT='soon'" in result.stderr


def test_settings_lists_a_bad_setting_and_exits_3():
    result = run_tecnorev("settings", env={"TECNOREV_DB_CONNECT_TIMEOUT": "soon"}, timeout=60)
    assert result.returncode == ExitCode.UNAVAILABLE
    assert result.stderr.startswith("error: 1 setting(s) cannot be used")


def test_commands_without_a_database_are_listed_beside_those_run_here():
    assert {c.command for c in CASES} | NO_DATABASE.keys() == cli_commands()


@pytest.mark.parametrize("args", [(), ("db",)], ids=["tecnorev", "tecnorev db"])
def test_version_lists_the_installed_distributions(args):
    result = run_tecnorev(*args, "--version", timeout=60)
    assert result.returncode == ExitCode.OK, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"tecnorev-core", "tecnorev-migrate", "tecnorev-catalog"} <= set(names)


def test_shell_completion_completes_db_commands():
    env = {
        "_TECNOREV_COMPLETE": "complete_bash",
        "COMP_WORDS": "tecnorev db upg",
        "COMP_CWORD": "2",
    }
    result = run_tecnorev(env=env, timeout=60)
    assert result.stdout.split() == ["upgrade"]


def test_tecnorev_migrate_runs_alone(tmp_path):
    import subprocess

    result = subprocess.run(
        [sys.executable, "-c", "from tecnorev.migrate.cli import entry; entry()", "upgrde"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
    )
    assert result.returncode == ExitCode.USAGE
    assert "Did you mean 'upgrade'?" in result.stderr


def test_init_says_what_to_do_instead(tmp_path):
    result = run_tecnorev("db", "init", "alembic", cwd=tmp_path, timeout=60)
    assert result.returncode == ExitCode.USAGE  # it takes no argument any more
    result = run_tecnorev("db", "init", cwd=tmp_path, timeout=60)
    assert result.returncode == ExitCode.FAILED
    assert "'tecnorev module new <name>'" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- migrations


def _add_branch(url: str, rows: int) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        for n in range(rows):
            connection.execute(
                sa.text(
                    "INSERT INTO branch (name, code, address, is_active, created_at, updated_at) "
                    "VALUES (:name, :code, 'street', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"name": f"branch {n}", "code": f"B{n}"},
            )
    engine.dispose()


@pytest.fixture
def with_branches(database_url):
    migrate(database_url, "heads")
    _add_branch(database_url, 3)
    return database_url


def test_downgrade_dry_run_lists_what_would_be_lost_and_changes_nothing(with_branches):
    before = schema_objects(with_branches)
    result = run_tecnorev(
        "db", "downgrade", "inventory@base", "--cascade", "--dry-run", url=with_branches
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert "would drop table branch: 3 row(s)" in result.stdout
    assert "would drop table order: 0 row(s)" in result.stdout
    assert "nothing was changed (--dry-run)" in result.stdout
    assert schema_objects(with_branches) == before


def test_downgrade_losing_rows_is_refused_without_a_terminal_or_yes(with_branches):
    before = schema_objects(with_branches)
    result = run_tecnorev("db", "downgrade", "inventory@base", "--cascade", url=with_branches)
    assert result.returncode == ExitCode.FAILED
    assert result.stderr.startswith("error: downgrade inventory@base would lose 3 row(s):")
    assert "pass --yes" in result.stderr
    assert schema_objects(with_branches) == before

    result = run_tecnorev(
        "db", "downgrade", "inventory@base", "--cascade", "--yes", url=with_branches
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert "dropping 3 row(s) (--yes)" in result.stdout
    assert "branch" not in schema_objects(with_branches)["tables"]


def test_downgrade_of_seeded_rows_only_needs_no_confirmation(database_url):
    migrate(database_url, "heads")
    result = run_tecnorev("db", "downgrade", "base", url=database_url)
    assert result.returncode == ExitCode.OK, result.stderr


def test_upgrade_with_nothing_to_do_says_so(database_url):
    migrate(database_url, "heads")
    result = run_tecnorev("db", "upgrade", "heads", url=database_url)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "nothing to do: the database is already at heads" in result.stdout


def test_heads_and_current_speak_plainly(database_url):
    migrate(database_url, "heads")
    for command in ("heads", "current", "history"):
        result = run_tecnorev("db", command, url=database_url)
        assert result.returncode == ExitCode.OK, result.stderr
        assert "effective head" not in result.stdout
        assert "(catalog) (head)" in result.stdout


def test_backups_are_readable_by_their_owner_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    result = run_tecnorev(
        "db", "upgrade", "heads", "--backup", "--backup-dir", str(tmp_path / "b"), url=url
    )
    assert result.returncode == ExitCode.OK, result.stderr
    (backup,) = (tmp_path / "b").iterdir()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_check_tells_a_database_altered_by_hand(database_url):
    migrate(database_url, "heads")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE payment ADD COLUMN note VARCHAR(20)")
    engine.dispose()
    result = run_tecnorev("db", "check", url=database_url)
    assert result.returncode == ExitCode.FAILED
    assert "\nerror: the database drifted" in result.stderr  # after alembic's INFO lines
    assert "remove column payment.note" in result.stderr
    assert "a new revision would not fix it" in result.stderr


def test_check_tells_models_changed_without_a_revision(scratch, database_url):
    assert scratch.run("db", "upgrade", "heads", url=database_url).returncode == 0
    scratch.add_product_field("note: str | None = Field(default=None, max_length=20)")
    result = scratch.run("db", "check", url=database_url)
    assert result.returncode == ExitCode.FAILED
    assert "\nerror: the models changed without a revision" in result.stderr
    assert "add column product.note" in result.stderr
    assert "tecnorev db generate <module> -m" in result.stderr


@pytest.mark.parametrize("args", [("db", "status"), ("db", "upgrade", "heads")], ids=" ".join)
def test_a_revision_file_that_does_not_load_exits_4(scratch, tmp_path, args):
    (first,) = scratch.migrations.glob("catalog_*_create_catalog_tables.py")
    first.write_text(first.read_text() + "\ndef broken(:\n")
    result = scratch.run(*args, url=f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == ExitCode.BROKEN, result.stderr
    assert "error: " in result.stderr and "SyntaxError" in result.stderr
    assert "Traceback" not in result.stderr
