"""Each module owns its permission codes and their default grants: declared on its descriptor,
granted by a revision of its own branch, removed with it; auth knows only its own.  Moving the
codes out of auth changes no user's effective permissions."""

from __future__ import annotations

from collections import defaultdict

import pytest
import sqlalchemy as sa

from tecnorev.core.db import create_db_engine, session_scope
from tecnorev.core.demo import DemoContext, _loader
from tecnorev.core.registry import get_registry
from tecnorev.testing.core import downgrade, migrate, run_tecnorev

# The heads of every module before the codes moved to their modules: the schema and grants
# every existing database has.
BEFORE = (
    "auth_346926648806",
    "catalog_68c333c29785",
    "inventory_218d64ae4d22",
    "sales_0db834b4b724",
    "logistics_4bb78629b483",
    "payments_7d5c61eff56a",
    "core_6c58470bb045",  # the outbox the demo's cancellations publish into
)
AUTH_CODES = {"users:read", "users:manage"}


def rows(url: str, statement: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(statement))]
    finally:
        engine.dispose()


def grants_by_role(url: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for role, code in rows(
        url,
        "SELECT r.name, rp.permission FROM role_permission rp JOIN role r ON r.id = rp.role_id",
    ):
        found[role].add(code)
    return dict(found)


def effective(url: str, declared: set[str]) -> dict[str, set[str]]:
    """Each user's permissions as the API computes them: its roles' grants of declared codes."""
    found: dict[str, set[str]] = {
        email: set() for (email,) in rows(url, 'SELECT email FROM "user"')
    }
    for email, code in rows(
        url,
        'SELECT u.email, rp.permission FROM "user" u JOIN user_role ur ON ur.user_id = u.id '
        "JOIN role_permission rp ON rp.role_id = ur.role_id",
    ):
        if code in declared:
            found[email].add(code)
    return found


def test_each_module_registers_and_grants_exactly_what_its_descriptor_declares(database_url):
    migrate(database_url, "heads")
    registry = get_registry()
    registered = {code: (module, text) for code, module, text in rows(
        database_url, "SELECT code, module, description FROM permission"
    )}  # fmt: skip
    assert registered == {
        code: (module, permission.description)
        for code, (module, permission) in registry.permissions.items()
    }
    wanted: dict[str, set[str]] = defaultdict(set)
    for code, (_, permission) in registry.permissions.items():
        for role in permission.roles:
            wanted[role].add(code)
    assert grants_by_role(database_url) == dict(wanted)


def test_upgrading_keeps_every_user_s_effective_permissions(database_url):
    for head in BEFORE:
        migrate(database_url, head)
    # the demo data, loaded as by the code of that time (its loaders do not touch permissions)
    registry = get_registry()
    engine = create_db_engine(database_url)
    try:
        with session_scope(engine, registry=registry) as session:
            context = DemoContext()
            for module in registry.modules:
                if module.demo:
                    _loader(module.demo, module.name)(session, context)
                    session.flush()
    finally:
        engine.dispose()
    # and an administrator's own changes: a code taken from a standard role, a role of their own
    customised = """
        DELETE FROM role_permission WHERE permission = 'coupons:manage'
          AND role_id = (SELECT id FROM role WHERE name = 'manager');
        INSERT INTO role (name, description, created_at, updated_at)
          VALUES ('auditor', 'reads every branch', '2026-12-01T10:00:00Z', '2026-12-01T10:00:00Z');
        INSERT INTO role_permission (role_id, permission)
          SELECT id, 'orders:read_all' FROM role WHERE name = 'auditor';
        INSERT INTO role_permission (role_id, permission)
          SELECT id, 'payments:read_all' FROM role WHERE name = 'auditor';
        INSERT INTO user_role (user_id, role_id, created_at)
          SELECT (SELECT min(id) FROM "user"), id, '2026-12-01T10:00:00Z' FROM role
          WHERE name = 'auditor';
    """
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for statement in filter(str.strip, customised.split(";")):
            conn.exec_driver_sql(statement)
    engine.dispose()
    every_code = {code for codes in grants_by_role(database_url).values() for code in codes}
    before = effective(database_url, every_code)  # the code of that time knew every code
    assert len(before) >= 5 and any(before.values())

    migrate(database_url, "heads")

    assert effective(database_url, set(get_registry().permissions)) == before
    for command in (["status"], ["verify"]):
        result = run_tecnorev("db", *command, url=database_url)
        assert result.returncode == 0, result.stdout + result.stderr


def test_with_auth_and_catalog_alone_no_other_module_s_code_or_grant_exists(database_url):
    migrate(database_url, "catalog@head")
    catalog = {"catalog:manage"}
    assert {c for (c,) in rows(database_url, "SELECT code FROM permission")} == AUTH_CODES | catalog
    granted = {code for codes in grants_by_role(database_url).values() for code in codes}
    assert granted == AUTH_CODES | catalog
    assert grants_by_role(database_url) == {
        "admin": AUTH_CODES | catalog,
        "manager": {"users:read"} | catalog,
    }

    # installing inventory, then sales, adds their codes and grants
    migrate(database_url, "inventory@head")
    migrate(database_url, "sales@head")
    registered = dict(rows(database_url, "SELECT code, module FROM permission"))
    assert registered["orders:place"] == "sales"
    assert registered["inventory:adjust"] == "inventory"
    assert "shipments:manage" not in registered and "payments:manage" not in registered
    assert grants_by_role(database_url)["customer"] == {"orders:place"}
    assert grants_by_role(database_url)["clerk"] == {
        "inventory:read", "inventory:adjust", "orders:place", "orders:manage"
    }  # fmt: skip

    # and removing sales' schema removes them again
    downgrade(database_url, "sales@base")
    registered = dict(rows(database_url, "SELECT code, module FROM permission"))
    assert not {code for code, module in registered.items() if module == "sales"}
    assert "customer" not in grants_by_role(database_url)


@pytest.mark.parametrize("target", ["sales@head", "heads"])
def test_the_handover_reads_nothing_first_so_offline_sql_is_complete(target, tmp_path):
    result = run_tecnorev(
        "db", "upgrade", target, "--sql", url=f"sqlite:///{tmp_path / 'never.db'}"
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE permission" in result.stdout
    assert "INSERT INTO permission" in result.stdout
    assert not (tmp_path / "never.db").exists()
