"""A deployment's environment gains and loses a module: real wheels installed into a real
virtual environment, migrating a populated PostgreSQL database."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.testing.core import require_postgres, temporary_postgres_database

from .venvs import make_venv, pip, run_in

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
WITHOUT_PAYMENTS = ["core", "migrate", "auth", "catalog", "inventory", "sales", "logistics"]

DEMO_ROWS = """
INSERT INTO "user" (id, email, full_name, hashed_password, is_active, created_at, updated_at)
  VALUES (1, 'ana@example.com', 'Ana', 'x', true, '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z');
INSERT INTO category (id, name, slug, created_at, updated_at, created_by_id)
  VALUES (1, 'Lamps', 'lamps', '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z', 1);
INSERT INTO product (id, sku, name, description, price, is_active, category_id, created_at, updated_at)
  VALUES (1, 'LAMP-1', 'Desk lamp', 'LED', 39.90, true, 1, '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z');
INSERT INTO branch (id, code, name, address, is_active, created_at, updated_at)
  VALUES (1, 'CEN', 'Centre', 'Main St 1', true, '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z');
INSERT INTO stock_entry (id, branch_id, product_id, quantity, created_at, updated_at)
  VALUES (1, 1, 1, 8, '2026-01-01T10:00:00Z', '2026-01-01T10:00:00Z');
INSERT INTO inventory_movement (branch_id, product_id, quantity_delta, reason, reference, note, created_at)
  VALUES (1, 1, 10, 'RECEIPT', '', '', '2026-01-01T10:00:00Z'),
         (1, 1, -2, 'SALE', 'order:1', '', '2026-01-01T11:00:00Z');
INSERT INTO "order" (id, customer_id, branch_id, status, subtotal, discount, total, created_at, updated_at)
  VALUES (1, 1, 1, 'CONFIRMED', 79.80, 0, 79.80, '2026-01-01T11:00:00Z', '2026-01-01T11:00:00Z');
INSERT INTO order_item (order_id, product_id, quantity, unit_price, line_total, created_at, updated_at)
  VALUES (1, 1, 2, 39.90, 79.80, '2026-01-01T11:00:00Z', '2026-01-01T11:00:00Z');
INSERT INTO shipment (order_id, carrier, tracking_number, status, created_at, updated_at)
  VALUES (1, 'DHL', 'TRK-1', 'PENDING', '2026-01-01T12:00:00Z', '2026-01-01T12:00:00Z');
"""


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheels) -> Path:
    root = tmp_path_factory.mktemp("deploy") / "venv"
    return make_venv(root, *[wheels[n] for n in WITHOUT_PAYMENTS])


def tecnorev(venv: Path, url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_in(venv, "tecnorev", *args, url=url, cwd=cwd)


def snapshot(url: str, tables: list[str]) -> dict[str, list[tuple]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {
            t: [tuple(r) for r in conn.execute(sa.text(f'SELECT * FROM "{t}" ORDER BY 1'))]
            for t in tables
        }
    engine.dispose()
    return rows


def assert_only_payments_added(before: dict, after: dict) -> None:
    """Every other module's rows as they were; payments adds only its permission codes and
    their grants."""
    grants = ("permission", "role_permission")
    assert {t: r for t, r in after.items() if t not in grants} == {
        t: r for t, r in before.items() if t not in grants
    }
    added_codes = set(after["permission"]) - set(before["permission"])
    assert set(before["permission"]) <= set(after["permission"])
    assert added_codes and {module for _, module, _ in added_codes} == {"payments"}
    assert set(before["role_permission"]) <= set(after["role_permission"])
    added_grants = set(after["role_permission"]) - set(before["role_permission"])
    assert added_grants and {code for _, code in added_grants} <= {c for c, _, _ in added_codes}


def ledger(url: str) -> list[tuple[str, str, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT revision, module, direction FROM tecnorev_migration_log ORDER BY id")
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_module_joins_leaves_is_set_aside_and_comes_back(venv, wheels, tmp_path):
    require_postgres()
    workdir = tmp_path / "empty"
    workdir.mkdir()
    with temporary_postgres_database() as url:
        run = lambda *args: tecnorev(venv, url, workdir, "db", *args)  # noqa: E731

        assert run("upgrade", "heads").returncode == 0
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(DEMO_ROWS)
            tables = sorted(
                set(sa.inspect(conn).get_table_names())
                - {"alembic_version", "tecnorev_migration_log", "tecnorev_revision_source"}
                - {"tecnorev_replica"}
            )
        engine.dispose()
        before = snapshot(url, tables)
        assert "payment" not in tables

        # installed into the running deployment's environment: only its branch is applied
        pip(venv, "install", "-q", "--no-deps", str(wheels["payments"]))
        applied_before = len(ledger(url))
        result = run("upgrade", "heads")
        assert result.returncode == 0, result.stderr
        new_rows = ledger(url)[applied_before:]
        assert new_rows and {module for _, module, _ in new_rows} == {"payments"}
        assert_only_payments_added(before, snapshot(url, tables))
        assert run("check").returncode == 0

        # uninstalled: every command explains, none deletes the record
        pip(venv, "uninstall", "-y", "-q", "tecnorev-payments")
        for args in (("current",), ("upgrade", "heads")):
            result = run(*args)
            assert result.returncode != 0
            assert "module 'payments'" in result.stderr
            assert "tecnorev db forget payments" in result.stderr
            assert "Traceback" not in result.stderr

        status = run("status")
        assert status.returncode == 5, status.stdout + status.stderr
        assert re.search(r"^payments\b.*not installed", status.stdout, re.M), status.stdout

        result = run("forget", "payments")
        assert result.returncode == 0, result.stderr
        status = run("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert re.search(r"^payments\b.*set aside", status.stdout, re.M), status.stdout
        assert "set aside payments_" in result.stdout
        result = run("upgrade", "heads")
        assert result.returncode == 0, result.stderr
        assert "Running upgrade" not in result.stderr
        current = run("current")
        assert current.returncode == 0, current.stderr
        assert "(sales)" in current.stdout and "(logistics)" in current.stdout
        assert run("check").returncode == 0
        assert any(module == "payments" for _, module, _ in ledger(url))

        # installed again: its record comes back, nothing is re-created
        pip(venv, "install", "-q", "--no-deps", str(wheels["payments"]))
        result = run("upgrade", "heads")
        assert result.returncode == 0, result.stderr
        assert "restored the record of payments_" in result.stdout
        assert "Running upgrade" not in result.stderr
        assert "(payments) (head)" in run("current").stdout
        assert_only_payments_added(before, snapshot(url, tables))
