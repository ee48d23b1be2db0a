"""``/ready``: the database is reachable and every installed module's code head is applied;
a database ahead of the code (mid rolling deploy) still serves."""

from __future__ import annotations

import secrets

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.registry import get_registry
from tecnorev.core.types import utcnow
from tecnorev.migrate.ledger import migration_log
from tecnorev.migrate.readiness import ReadinessCheck
from tecnorev.migrate.status import owners_of
from tecnorev.testing.core import migrate

UNREACHABLE = "postgresql+psycopg2://postgres@127.0.0.1:1/x"


def revisions_of(module: str) -> set[str]:
    registry = get_registry()
    owners = owners_of(ReadinessCheck(registry).scripts, registry)
    return {revision for revision, owner in owners.items() if owner == module}


def recorded(url: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        found = set(
            connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars()
        )
    engine.dispose()
    return found


def migrate_all_but(url: str, left_out: str) -> None:
    for name in get_registry().names:
        if name != left_out:
            migrate(url, f"{name}@head")


def test_ready_at_heads(database_url):
    migrate(database_url, "heads")
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["behind"] == {}
    assert body["modules"] == {name: "up to date" for name in get_registry().names}


@pytest.mark.modules("payments")
def test_not_ready_names_the_one_module_whose_head_is_not_applied(database_url):
    migrate_all_but(database_url, "payments")
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["database"] == "ok"
    assert list(body["behind"]) == ["payments"]
    assert set(body["behind"]["payments"]) == revisions_of("payments")
    assert body["modules"]["payments"] == "pending"
    assert {state for name, state in body["modules"].items() if name != "payments"} == {
        "up to date"
    }


def test_not_ready_while_the_database_is_unreachable():
    with TestClient(create_app(database_url=UNREACHABLE)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "not_ready", "database": "unreachable", "behind": {}}


@pytest.mark.modules("payments")
def test_a_database_ahead_of_the_code_is_still_ready(database_url):
    """A newer replica applied a payments revision this code does not have yet."""
    migrate(database_url, "heads")
    (head,) = [r for r in revisions_of("payments") if r in recorded(database_url)]
    newer = f"payments_{secrets.token_hex(6)}"
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE alembic_version SET version_num = :newer WHERE version_num = :head"),
            {"newer": newer, "head": head},
        )
        connection.execute(
            sa.insert(migration_log).values(
                revision=newer, module="payments", direction="upgrade", parents=head, at=utcnow()
            )
        )
    engine.dispose()

    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["behind"] == {}
    assert body["modules"]["payments"] == "database ahead of code"


@pytest.mark.modules("auth", "catalog")
def test_a_database_migrated_for_auth_alone_names_every_other_module(database_url):
    migrate(database_url, "auth@head")
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    names = get_registry().names
    assert list(response.json()["behind"]) == [n for n in names if n != "auth"]
