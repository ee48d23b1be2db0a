"""``tecnorev db adopt``: databases built before per-module migrations."""

from __future__ import annotations

import sqlalchemy as sa

from tecnorev.core.registry import get_registry
from tecnorev.testing.core import migrate, recorded_revisions, run_tecnorev, schema_objects

MODULES = get_registry().names


def build_with_create_all(url: str, modules: list[str] = MODULES) -> None:
    registry = get_registry()
    metadata = registry.load_models()
    tables = [t for t in metadata.sorted_tables if registry.table_owners.get(t.name) in modules]
    engine = sa.create_engine(url)
    for table in tables:  # table by table: only the enum types these tables use are created
        table.create(engine)
    with engine.begin() as conn:
        if "user" in {t.name for t in tables}:
            conn.execute(
                sa.text(
                    'INSERT INTO "user" (email, full_name, hashed_password, is_active, '
                    "created_at, updated_at) VALUES ('old@example.com', 'Old', 'h', true, "
                    "'2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00')"
                )
            )
    engine.dispose()


def heads() -> set[str]:
    result = run_tecnorev("db", "heads")
    return {line.split()[0] for line in result.stdout.splitlines()}


def ledger_directions(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT revision, direction FROM tecnorev_migration_log ORDER BY id")
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_create_all_database_is_adopted_at_every_head(database_url):
    build_with_create_all(database_url)
    result = run_tecnorev("db", "adopt", url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"matching their head: {', '.join(MODULES)}" in result.stdout
    assert recorded_revisions(database_url) <= heads()
    result = run_tecnorev("db", "upgrade", "heads", url=database_url)
    assert result.returncode == 0 and "Running upgrade" not in result.stderr
    assert run_tecnorev("db", "check", url=database_url).returncode == 0
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT email FROM "user"')).scalar() == "old@example.com"
    engine.dispose()
    assert {d for _, d in ledger_directions(database_url)} == {"adopt"}


def test_the_guides_single_history_is_replaced_and_kept_in_the_ledger(database_url):
    build_with_create_all(database_url)
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO alembic_version VALUES ('6404ead5fcfb')"))
    engine.dispose()
    result = run_tecnorev("db", "current", url=database_url)
    assert result.returncode != 0  # the old id is not a revision of any module
    result = run_tecnorev("db", "adopt", url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the earlier single history (6404ead5fcfb) is kept in the ledger" in result.stdout
    assert ("6404ead5fcfb", "adopted-from") in ledger_directions(database_url)
    assert "6404ead5fcfb" not in recorded_revisions(database_url)
    assert run_tecnorev("db", "current", url=database_url).returncode == 0


def test_a_partial_database_adopts_what_is_there(database_url):
    build_with_create_all(database_url, ["auth", "catalog"])
    result = run_tecnorev("db", "adopt", url=database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matching their head: auth, catalog" in result.stdout
    assert (
        "not present (tecnorev db upgrade heads creates them): core, inventory, sales"
        in result.stdout
    )
    result = run_tecnorev("db", "upgrade", "heads", url=database_url)
    assert result.returncode == 0, result.stderr
    assert "-> auth_" not in result.stderr and "-> inventory_" in result.stderr
    assert run_tecnorev("db", "check", url=database_url).returncode == 0


def test_a_schema_that_differs_is_reported_and_nothing_is_recorded(database_url):
    build_with_create_all(database_url)
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE product DROP COLUMN description"))
    engine.dispose()
    result = run_tecnorev("db", "adopt", url=database_url)
    assert result.returncode == 1
    assert "cannot adopt" in result.stdout
    assert "catalog: add column product.description" in result.stdout
    assert recorded_revisions(database_url) == set()


def test_an_already_migrated_database_is_left_alone(database_url):
    migrate(database_url, "heads")
    before = recorded_revisions(database_url)
    result = run_tecnorev("db", "adopt", url=database_url)
    assert result.returncode == 1
    assert "already migrated per module" in result.stdout
    assert recorded_revisions(database_url) == before


def test_dry_run_records_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'dry.db'}"
    build_with_create_all(url)
    result = run_tecnorev("db", "adopt", "--dry-run", url=url)
    assert result.returncode == 0, result.stderr
    assert "matching their head" in result.stdout
    assert recorded_revisions(url) == set()
    assert schema_objects(url)["tables"]
