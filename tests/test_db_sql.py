"""``tecnorev db sql <module> [range]``: the SQL of a module's pending migrations, offline.

The proof that the SQL is right is running it: applied by hand to the database it was computed
for, it must leave the same schema and the same ``alembic_version`` as ``upgrade`` would.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from tecnorev.core.types import utcnow
from tecnorev.migrate.cli import make_config
from tecnorev.migrate.ledger import forgotten_revision, ledger_metadata
from tecnorev.testing.core import (
    fresh_database,
    installed_revisions,
    migrate,
    recorded_revisions,
    run_tecnorev,
    schema_objects,
)

# the first revisions of catalog and inventory: their tables, before their grants
CATALOG_FIRST = "catalog_68c333c29785"
INVENTORY_FIRST = "inventory_218d64ae4d22"


def head_of(module: str) -> str:
    return ScriptDirectory.from_config(make_config()).get_revision(f"{module}@head").revision


def revisions_of(module: str) -> set[str]:
    scripts = ScriptDirectory.from_config(make_config())
    return {s.revision for s in scripts.walk_revisions() if s.revision.startswith(f"{module}_")}


def needed_by(module: str) -> set[str]:
    """The revisions ``<module>@head`` needs applied, its own included: down revisions and
    ``depends_on``, transitively (not necessarily every revision of a module it depends on)."""
    parents = installed_revisions()
    needed: set[str] = set()
    todo = [head_of(module)]
    while todo:
        revision = todo.pop()
        if revision not in needed:
            needed.add(revision)
            todo.extend(parents[revision])
    return needed


def ran(sql: str) -> set[str]:
    """The revisions whose upgrade the SQL runs ("-- Running upgrade a -> b" comments)."""
    return set(re.findall(r"^-- Running upgrade .*?-> (\S+)$", sql, re.M))


def sql_of(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_tecnorev("db", "sql", *args, url=url)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def assert_refused(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def apply_sql(url: str, sql: str) -> None:
    """Run a script the way a DBA would: psql -f (each statement on its own, so a
    CREATE INDEX CONCURRENTLY after a COMMIT runs outside a transaction), sqlite3 < file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        psql = shutil.which("psql")
        assert psql is not None, "psql (PostgreSQL's client) runs the script"
        subprocess.run(
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", libpq, "-f", "-"],
            input=sql,
            text=True,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        raw = engine.raw_connection()
        try:
            raw.driver_connection.executescript(sql)
        finally:
            raw.close()
    finally:
        engine.dispose()


def upgraded_elsewhere(backend: str, tmp_path: Path, before: str, after: str) -> tuple[dict, set]:
    """Schema and alembic_version of another database taken from ``before`` to ``after`` by
    ``upgrade``: what the SQL must reproduce."""
    (tmp_path / "reference").mkdir()
    with fresh_database(backend, tmp_path / "reference") as url:
        if before != "base":
            migrate(url, before)
        migrate(url, after)
        return schema_objects(url), recorded_revisions(url)


def test_pending_sql_of_a_fresh_database_runs_the_module_and_what_it_needs(
    backend, database_url, tmp_path
):
    result = sql_of(database_url, "catalog")

    assert ran(result.stdout) == needed_by("catalog")
    assert needed_by("catalog") - revisions_of("catalog") <= revisions_of("auth")
    assert result.stdout.startswith("CREATE TABLE alembic_version") or result.stdout.startswith(
        "BEGIN;\n\nCREATE TABLE alembic_version"
    )
    assert "INFO" not in result.stdout and "-- catalog" not in result.stdout
    assert "starting from base" in result.stderr
    pending = next(line for line in result.stderr.splitlines() if "pending for catalog: " in line)
    assert pending.split("pending for catalog: ")[1].startswith(f"{CATALOG_FIRST}, ")
    assert pending.endswith(head_of("catalog"))
    needed = result.stderr.split("also needed first, because catalog depends on them")[1]
    assert needed.startswith(" and they are not applied")
    assert all(revision in needed for revision in needed_by("catalog") - revisions_of("catalog"))
    assert f"dialect: {backend}" in result.stderr
    # offline: nothing was written (on SQLite not even the file)
    if backend == "sqlite":
        assert not Path(database_url.removeprefix("sqlite:///")).exists()
    else:
        assert recorded_revisions(database_url) == set()

    apply_sql(database_url, result.stdout)
    assert (schema_objects(database_url), recorded_revisions(database_url)) == upgraded_elsewhere(
        backend, tmp_path, "base", "catalog@head"
    )


def test_pending_sql_starts_where_the_database_is(backend, database_url, tmp_path):
    migrate(database_url, "catalog@head")
    before = recorded_revisions(database_url)

    result = sql_of(database_url, "sales")

    assert ran(result.stdout) == needed_by("sales") - needed_by("catalog")
    assert ran(result.stdout) >= revisions_of("sales")
    assert "sales in the database: base (nothing of it applied)" in result.stderr
    assert f"(alembic applies them with it): inventory: {INVENTORY_FIRST}" in result.stderr
    # the version table gains sales' row next to the rows this database has
    assert "INSERT INTO alembic_version (version_num) VALUES ('inventory_218d64ae4d22')" in (
        result.stdout
    )
    assert recorded_revisions(database_url) == before

    apply_sql(database_url, result.stdout)
    assert (schema_objects(database_url), recorded_revisions(database_url)) == upgraded_elsewhere(
        backend, tmp_path, "catalog@head", "sales@head"
    )


def test_a_module_at_its_head_has_nothing_to_run(database_url):
    migrate(database_url, "heads")
    result = sql_of(database_url, "catalog")
    assert result.stdout == ""
    assert f"catalog in the database: {head_of('catalog')}" in result.stderr
    assert "nothing to run: catalog is already at catalog@head" in result.stderr


def test_an_explicit_range_ignores_the_database(database_url):
    migrate(database_url, "heads")
    result = sql_of(database_url, "catalog", "base:catalog@head")
    assert ran(result.stdout) == needed_by("catalog")
    only = sql_of(database_url, "catalog", f"{head_of('auth')}:catalog@head")
    assert ran(only.stdout) == revisions_of("catalog")
    assert "also needed first" not in only.stderr


@pytest.mark.postgres
def test_postgresql_sql_is_postgresql_even_when_the_server_is_down():
    url = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
    result = sql_of(url, "auth")
    assert "cannot read the database" in result.stderr and "starting from base" in result.stderr
    assert "dialect: postgresql" in result.stderr
    assert "SERIAL" in result.stdout and "BEGIN;" in result.stdout
    assert ran(result.stdout) == revisions_of("auth")


def test_sqlite_sql_is_sqlite(tmp_path):
    result = sql_of(f"sqlite:///{tmp_path / 'none.db'}", "auth")
    assert "no SQLite file at" in result.stderr
    assert "DATETIME" in result.stdout and "SERIAL" not in result.stdout


def test_the_reader_may_stop_early(tmp_path):
    """``tecnorev db sql catalog | head``: a closed pipe is not a failure."""
    program = "import sys; from tecnorev.core.cli import main; sys.exit(main())"
    child = subprocess.Popen(
        [sys.executable, "-c", program, "db", "sql", "catalog"],
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline()
    child.stdout.close()
    stderr = child.communicate(timeout=60)[1]
    assert child.wait(timeout=60) == 0, stderr
    assert "FAILED" not in stderr


def test_a_forgotten_revision_coming_back_counts_as_applied(database_url):
    """The next upgrade restores it first, so its SQL is not pending."""
    migrate(database_url, CATALOG_FIRST)
    (needs,) = set(installed_revisions()[CATALOG_FIRST])  # the auth revision it needs
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        ledger_metadata.create_all(conn, tables=[forgotten_revision])
        conn.execute(
            forgotten_revision.insert().values(
                revision=CATALOG_FIRST, module="catalog", parents=needs, at=utcnow()
            )
        )
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": needs})
    engine.dispose()
    result = sql_of(database_url, "catalog")
    # catalog's later revision is pending (with the auth ones it needs); the forgotten one is
    # not run again
    assert head_of("catalog") in ran(result.stdout)
    assert CATALOG_FIRST not in ran(result.stdout)
    assert f"{CATALOG_FIRST} (set aside by 'forget') will be recorded again" in result.stderr


# --------------------------------------------------------------------------- refusals


def test_an_unknown_module_is_refused(database_url):
    result = run_tecnorev("db", "sql", "billing", url=database_url)
    assert_refused(result, "no installed module named 'billing' (installed: auth, core, catalog")


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("a:b:c", "bad range 'a:b:c': expected FROM:TO (e.g. base:catalog@head"),
        (":catalog@head", "bad range ':catalog@head': expected FROM:TO"),
        ("catalog_000000000000:catalog@head", "Can't locate revision identified by"),
        # every module's head but catalog's and auth's (which catalog's head needs)
        (
            "base:heads",
            "'heads' names revisions of auth, core, inventory, logistics, payments, sales, not of catalog",
        ),
        ("base:auth@head", "'auth@head' names revisions of auth, not of catalog"),
        ("catalog@head:base", "it goes down (it would revert"),
    ],
)
def test_a_bad_range_is_refused(database_url, given, says):
    result = run_tecnorev("db", "sql", "catalog", given, url=database_url)
    assert_refused(result, says)


def test_a_downgrade_range_names_the_command_for_its_sql(database_url):
    result = run_tecnorev("db", "sql", "catalog", "catalog@head:base", url=database_url)
    assert_refused(
        result, "'tecnorev db sql' shows upgrades", "tecnorev db downgrade FROM:TO --sql"
    )


def test_a_recorded_revision_of_an_uninstalled_module_is_named(database_url):
    migrate(database_url, "heads")
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('billing_0123456789ab')"))
    engine.dispose()
    result = run_tecnorev("db", "sql", "catalog", url=database_url)
    assert_refused(result, "revision 'billing_0123456789ab' of module 'billing'", "forget billing")
