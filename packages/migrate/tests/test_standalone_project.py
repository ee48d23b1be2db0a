"""The engine on a project that is not Tecno Rev: its own entry-point group, settings prefix and
command name, a plain SQLAlchemy declarative base, and no Tecno Rev core, domain package,
FastAPI or SQLModel imported (the child processes refuse those imports)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from .shop_project import FORBIDDEN, ITEMS_REVISION, ORDERS_REVISION, run, write_project


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_project(tmp_path / "shop")


def _ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert not any(f"imported {name}" in result.stderr for name in FORBIDDEN), result.stderr
    return result.stdout + result.stderr


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return set(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_the_shop_migrates_checks_and_reverts_per_module(shop: Path, database_url: str) -> None:
    before = run(shop, "status", url=database_url)
    assert before.returncode == 1, before.stderr  # 1: revisions pending
    assert "pending in items, orders: shop db upgrade heads" in before.stdout

    _ok(run(shop, "upgrade", "heads", url=database_url))
    _ok(run(shop, "status", url=database_url))
    assert {"item", "order_line"} <= _tables(database_url)

    listed = run(shop, "status", "--json", url=database_url)
    _ok(listed)
    status = json.loads(listed.stdout)
    modules = {m["module"]: m for m in status["modules"]}
    assert set(modules) == {"items", "orders"}
    assert all(m["state"] == "up to date" for m in modules.values()), modules

    current = _ok(run(shop, "current", url=database_url))
    assert ITEMS_REVISION in current and ORDERS_REVISION in current

    _ok(run(shop, "check", url=database_url))  # the models match the migrations
    _ok(run(shop, "verify", url=database_url))
    _ok(run(shop, "lint", url=database_url))

    graph = _ok(run(shop, "graph", url=database_url))
    assert "items" in graph and "orders" in graph

    # items is needed by orders: reverting it alone is refused, with the module named
    refused = run(shop, "downgrade", "items@base", url=database_url)
    assert refused.returncode != 0
    assert "orders" in refused.stdout + refused.stderr

    _ok(run(shop, "downgrade", "orders@base", url=database_url))
    assert "order_line" not in _tables(database_url)
    assert "item" in _tables(database_url)

    _ok(run(shop, "downgrade", "items@base", url=database_url))
    assert not {"item", "order_line"} & _tables(database_url)


def test_the_project_names_its_own_command_and_settings(shop: Path, tmp_path: Path) -> None:
    usage = run(shop, "--help", url=f"sqlite:///{tmp_path / 'named.db'}")
    assert "Usage: shop db" in usage.stdout, usage.stdout[:200]

    # nothing listens on port 1: the message names the shop's own setting for the wait
    nowhere = "postgresql+psycopg2://shop@127.0.0.1:1/shop"
    refused = run(shop, "upgrade", "heads", url=nowhere, SHOP_DB_CONNECT_TIMEOUT="3s")
    assert refused.returncode == 3, refused.stderr
    assert "cannot connect to the database at" in refused.stderr
    assert "SHOP_DB_CONNECT_TIMEOUT=3 bounds the wait" in refused.stderr
    assert "Traceback" not in refused.stderr

    bad = run(shop, "upgrade", "heads", url=nowhere, SHOP_DB_CONNECT_TIMEOUT="soon")
    assert bad.returncode == 3, bad.stderr
    assert "SHOP_DB_CONNECT_TIMEOUT='soon' must be a duration" in bad.stderr


def test_without_a_database_url_the_project_is_told_to_set_one(shop: Path) -> None:
    result = run(shop, "upgrade", "heads", url=None)
    assert result.returncode == 3, result.stderr
    assert "DATABASE_URL is not set" in result.stderr


def test_a_dotenv_line_that_cannot_be_read_stops_the_command_with_file_and_line(shop: Path):
    (shop / ".env").write_text("SHOP_LOCK_TIMEOUT=2s\nDATABASE_URL 'sqlite:///x.db\n")
    result = run(shop, "current", url=None)
    assert result.returncode == 3, result.stderr
    assert f"{shop / '.env'}, line 2: cannot read" in result.stderr
    assert not (shop / "x.db").exists()
