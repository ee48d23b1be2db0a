"""Start-up: production refuses to serve a database its code is ahead of, or a weak key;
development says what is missing and serves."""

from __future__ import annotations

import logging
import secrets
import threading

import pytest
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.api.app import check_ready_to_serve
from tecnorev.core.errors import ConfigError, DatabaseUnavailable
from tecnorev.core.registry import get_registry
from tecnorev.core.settings import DEVELOPMENT_SECRET_KEY, get_settings
from tecnorev.testing.core import migrate


@pytest.fixture
def production(monkeypatch):
    def configure(secret_key: str | None = secrets.token_urlsafe(48)) -> None:
        monkeypatch.setenv("TECNOREV_ENV", "production")
        if secret_key is None:
            monkeypatch.delenv("SECRET_KEY", raising=False)
        else:
            monkeypatch.setenv("SECRET_KEY", secret_key)
        get_settings.cache_clear()

    return configure


def migrate_all_but(url: str, left_out: str) -> None:
    for name in get_registry().names:
        if name != left_out:
            migrate(url, f"{name}@head")


@pytest.mark.modules("payments")
def test_production_refuses_to_serve_with_pending_migrations_naming_the_module(
    database_url, production
):
    migrate_all_but(database_url, "payments")
    production()
    app = create_app(database_url=database_url)
    with pytest.raises(ConfigError) as refused, TestClient(app):
        pass
    message = str(refused.value)
    assert message.startswith("refusing to serve: migrations pending for payments (payments: ")
    assert "tecnorev db upgrade heads" in message
    others = [name for name in get_registry().names if name != "payments"]
    assert not any(f" {name}" in message for name in others), message


def test_production_serves_a_database_at_heads(database_url, production):
    migrate(database_url, "heads")
    production()
    with TestClient(create_app(database_url=database_url)) as client:
        assert client.get("/ready").status_code == 200


def test_production_refuses_to_start_on_an_unreachable_database(production):
    production()
    app = create_app(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x")
    with pytest.raises(DatabaseUnavailable, match="cannot connect"), TestClient(app):
        pass


@pytest.mark.modules("payments")
def test_development_warns_naming_the_pending_modules_and_serves(database_url, caplog):
    migrate_all_but(database_url, "payments")
    caplog.set_level(logging.WARNING, logger="tecnorev.api")
    with TestClient(create_app(database_url=database_url)) as client:
        assert client.get("/health").status_code == 200
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert list(ready.json()["behind"]) == ["payments"]
    (warning,) = [r for r in caplog.records if r.name == "tecnorev.api"]
    assert warning.levelno == logging.WARNING
    assert "migrations pending for payments (" in warning.getMessage()


@pytest.mark.parametrize(
    "secret_key",
    [None, "secret", "a1b2c3d4e5f6g7h8i9j0", DEVELOPMENT_SECRET_KEY],
    ids=["missing", "secret", "20-characters", "development-default"],
)
def test_production_without_a_strong_secret_key_is_refused_at_create_app(
    production, secret_key, tmp_path
):
    production(secret_key)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(database_url=f"sqlite:///{tmp_path / 'x.db'}")


def test_development_needs_no_secret_key(tmp_path):
    app = create_app(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert TestClient(app).get("/health").status_code == 200


@pytest.mark.modules("payments")
def test_the_pre_flight_check_of_tecnorev_serve_names_the_pending_module(database_url):
    migrate_all_but(database_url, "payments")
    with pytest.raises(ConfigError, match=r"migrations pending for payments \("):
        check_ready_to_serve(database_url=database_url)
    migrate(database_url, "payments@head")
    check_ready_to_serve(database_url=database_url)


def _dispatchers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "tecnorev-outbox" and t.is_alive()}


def test_overlapping_lifespans_share_the_background_work_and_the_last_one_stops_it(
    database_url,
):
    # a test client and schemathesis (or any second client) may run the same app's lifespan
    # at once, and end in either order: the app serves until the last ends, and no
    # dispatcher thread outlives it
    migrate(database_url)
    before = _dispatchers()
    app = create_app(database_url=database_url)
    first, second = TestClient(app), TestClient(app)
    first.__enter__()
    started = _dispatchers() - before
    assert len(started) == 1
    second.__enter__()
    assert _dispatchers() - before == started  # not a second one
    first.__exit__(None, None, None)  # the first to start ends first
    assert second.get("/health").status_code == 200  # still served
    assert _dispatchers() - before == started
    second.__exit__(None, None, None)
    for thread in started:
        thread.join(timeout=15)
    assert not _dispatchers() - before

    # and it starts again after that, as a server's lifespan may
    with TestClient(app) as again:
        assert again.get("/health").status_code == 200
        assert len(_dispatchers() - before) == 1
    for thread in _dispatchers() - before:
        thread.join(timeout=15)
    assert not _dispatchers() - before
