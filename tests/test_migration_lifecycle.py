"""Every installed module's branch, applied and reverted as a whole and one module at a time."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from tecnorev.core.registry import get_registry
from tecnorev.testing.core import (
    alembic_config,
    downgrade,
    fresh_database,
    migrate,
    recorded_revisions,
    run_tecnorev,
    schema_objects,
)

MODULES = get_registry().names
EMPTY = {"tables": set(), "indexes": set(), "sequences": set(), "types": set()}


def test_all_six_modules_are_installed_in_dependency_order():
    # and core's own branch (the outbox), which every project has
    assert MODULES == ["auth", "core", "catalog", "inventory", "sales", "logistics", "payments"]


def test_heads_lists_exactly_one_head_per_module():
    result = run_tecnorev("db", "heads")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    labels = sorted(line.split("(")[1].split(")")[0] for line in lines)
    assert labels == sorted(MODULES)


def test_upgrade_downgrade_upgrade_leaves_no_trace_and_models_match(database_url):
    migrate(database_url, "heads")
    owned = {t for m in MODULES for t in get_registry().tables_of(m)}
    assert schema_objects(database_url)["tables"] == owned

    downgrade(database_url, "base")
    assert schema_objects(database_url) == EMPTY
    assert recorded_revisions(database_url) == set()

    migrate(database_url, "heads")
    heads = {s.revision for s in _scripts().get_revisions("heads")}
    assert recorded_revisions(database_url) == heads
    result = run_tecnorev("db", "check", url=database_url)
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout


def test_auth_branch_seeds_the_standard_roles(database_url):
    migrate(database_url, "auth@head")
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        roles = set(conn.execute(sa.text("SELECT name FROM role")).scalars())
        admin_codes = conn.execute(
            sa.text(
                "SELECT count(*) FROM role_permission p JOIN role r ON r.id = p.role_id "
                "WHERE r.name = 'admin'"
            )
        ).scalar()
    engine.dispose()
    from tecnorev.auth.permissions import PERMISSIONS

    assert roles == {"admin", "manager", "clerk", "customer"}
    assert admin_codes == len(PERMISSIONS)  # auth's own codes: the others come with their modules


@pytest.mark.parametrize("module", MODULES)
def test_one_module_applies_with_exactly_its_dependencies_and_reverts_without_trace(
    database_url, backend, tmp_path, module
):
    registry = get_registry()
    dependencies = registry.dependencies(module)
    migrate(database_url, f"{module}@head")
    tables = schema_objects(database_url)["tables"]
    assert tables == {t for m in dependencies | {module} for t in registry.tables_of(m)}

    downgrade(database_url, f"{module}@base")
    # exactly what a database holding only the dependencies, as far as the module needed
    # them (its depends_on, not their heads), has: nothing of module is left
    kept = recorded_revisions(database_url)
    assert not any(revision.startswith(f"{module}_") for revision in kept)
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    with fresh_database(backend, reference_dir) as reference:
        for revision in sorted(kept):
            migrate(reference, revision)
        assert recorded_revisions(reference) == kept
        assert schema_objects(database_url) == schema_objects(reference)


def _scripts():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def test_postgres_enum_type_is_dropped_with_its_table(postgres_url):
    migrate(postgres_url, "heads")
    assert "order_status" in schema_objects(postgres_url)["types"]
    downgrade(postgres_url, "sales@base", cascade=True)
    assert "order_status" not in schema_objects(postgres_url)["types"]
    migrate(postgres_url, "heads")  # would fail with "type order_status already exists"
    assert "order_status" in schema_objects(postgres_url)["types"]


def test_upgrade_records_versions_and_ledger(database_url):
    # A pre-flight query left open would make alembic treat the transaction as the caller's
    # and never commit: alembic_version would stay empty on SQLite.
    migrate(database_url, "heads")
    assert recorded_revisions(database_url) == {
        s.revision for s in _scripts().get_revisions("heads")
    }
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT revision, module, direction FROM tecnorev_migration_log")
        ).all()
    engine.dispose()
    assert len(rows) == len(list(_scripts().walk_revisions()))
    assert {r.module for r in rows} == set(MODULES)
    assert {r.direction for r in rows} == {"upgrade"}


def test_harness_connection_is_used_instead_of_the_configured_database(tmp_path):
    # Test harnesses hand env.py a connection; migrating DATABASE_URL instead would be wrong.
    configured = f"sqlite:///{tmp_path / 'configured.db'}"
    handed = sa.create_engine(f"sqlite:///{tmp_path / 'handed.db'}")
    config = alembic_config(configured)
    with handed.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "auth@head")
    assert "user" in sa.inspect(handed).get_table_names()
    assert not (tmp_path / "configured.db").exists()
    handed.dispose()


def test_modules_command_lists_modules_with_versions_and_dependencies():
    result = run_tecnorev("modules")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == MODULES
    assert "depends on: sales" in lines[-1]


def test_current_prints_one_labelled_line_per_module(tmp_path):
    url = f"sqlite:///{tmp_path / 'current.db'}"
    migrate(url, "heads")
    result = run_tecnorev("db", "current", url=url)
    assert result.returncode == 0, result.stderr
    labels = [line.split("(")[1].split(")")[0] for line in result.stdout.strip().splitlines()]
    assert labels == MODULES
