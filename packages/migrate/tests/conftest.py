"""Databases for the engine's own tests: a SQLite file, and a throwaway PostgreSQL database on
the server named by TEST_DATABASE_URL (skipped when unreachable, unless
TECNOREV_REQUIRE_POSTGRES is set, as on CI)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

ADMIN_URL = (
    os.environ.get("TEST_DATABASE_URL") or "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def _admin() -> sa.Engine:
    url = sa.make_url(ADMIN_URL.replace("postgresql://", "postgresql+psycopg2://", 1))
    return sa.create_engine(
        url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": 5},
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shop.db'}"
        return
    admin = _admin()
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        if os.environ.get("TECNOREV_REQUIRE_POSTGRES", "") not in ("", "0"):
            pytest.fail(f"PostgreSQL not reachable (TECNOREV_REQUIRE_POSTGRES is set): {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    name = f"migrate_test_{secrets.token_hex(6)}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
