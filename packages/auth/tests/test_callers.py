"""A worker reuses the callers it looked up (``tecnorev.auth.callers``) until PostgreSQL
notifies a change to them, whoever makes it; without a listener it reads every caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from tecnorev.auth import callers
from tecnorev.auth.deps import Principal
from tecnorev.auth.permissions import USERS_MANAGE, USERS_READ
from tecnorev.auth.security import decode_access_token
from tecnorev.core.web.session import reading_engine

WAIT = 15.0  # seconds: the longest any notification or reconnection is waited for


def reads() -> float:
    """Callers read from the database so far, in this process."""
    value = REGISTRY.get_sample_value("tecnorev_caller_lookups_total", {"source": "database"})
    return value or 0.0


@contextmanager
def caching(api) -> Iterator[callers.CallerCache]:
    """auth's background work on the test app's engines, as the service runs it."""
    app = api.client.app
    reader = app.state.read_engine = reading_engine(api.engine)
    work = callers.background([api.engine, reader])
    assert work is not None
    work.start()
    try:
        listening(work.cache)
        yield work.cache
    finally:
        work.stop()
        reader.dispose()
    assert not any(t.name == "tecnorev-callers" for t in threading.enumerate())


def listening(cache: callers.CallerCache) -> None:
    with cache.heard:
        assert cache.heard.wait_for(lambda: cache.listening, WAIT), "never started listening"


def heard(cache: callers.CallerCache, since: int) -> None:
    """Wait until the cache moved past generation ``since`` (a notification arrived)."""
    with cache.heard:
        assert cache.heard.wait_for(lambda: cache.generation > since, WAIT), "nothing heard"


def login_of(tokens: dict) -> str:
    return decode_access_token(tokens["access_token"]).family_id


@pytest.fixture
def api(postgres_api):
    return postgres_api


def test_a_caller_is_read_once_then_reused_until_sql_typed_by_hand_changes_it(api):
    with caching(api) as cache:
        user_id = api.user("reader@example.com", permissions=[USERS_READ])
        tokens = api.login("reader@example.com")
        before = reads()
        for _ in range(5):  # a page read as a Caller, and /me with a CurrentUser
            assert api.get("/users", tokens).status_code == 200
            assert api.get("/me", tokens).status_code == 200
        assert reads() - before == 1
        assert cache.get(user_id, login_of(tokens)) is not None

        # an operator's UPDATE, outside every service: only the notification tells
        since = cache.generation
        with api.engine.begin() as connection:
            connection.execute(
                sa.text('UPDATE "user" SET is_active = false WHERE id = :id'), {"id": user_id}
            )
        heard(cache, since)
        assert cache.get(user_id, login_of(tokens)) is None
        refused = api.get("/users", tokens)
        assert (refused.status_code, api.code(refused)) == (401, "not_authenticated")
        assert "deactivated" in refused.json()["error"]["message"]


def test_a_change_through_the_api_is_seen_by_the_very_next_request(api):
    with caching(api) as cache:
        api.user("admin@example.com", permissions=[USERS_READ, USERS_MANAGE])
        reader_id = api.user("reader@example.com", permissions=[USERS_READ])
        admin = api.login("admin@example.com")
        reader = api.login("reader@example.com")
        assert api.get("/users", reader).status_code == 200
        assert cache.get(reader_id, login_of(reader)) is not None

        # forgotten as the change commits, in the worker that made it: no wait at all
        assert api.send("PUT", f"/users/{reader_id}/roles", admin, json={"roles": []}).is_success
        assert cache.get(reader_id, login_of(reader)) is None
        denied = api.get("/users", reader)
        assert (denied.status_code, api.code(denied)) == (403, "permission_denied")

        assert api.send("POST", "/logout", reader).status_code == 204
        ended = api.get("/me", reader)
        assert (ended.status_code, api.code(ended)) == (401, "not_authenticated")


@pytest.mark.parametrize(
    ("change", "then"),
    [
        # a role's permissions: everyone is forgotten
        ("DELETE FROM role_permission", 403),
        ("TRUNCATE role_permission", 403),
        # the user's roles, its logins, the user itself
        ("DELETE FROM user_role WHERE user_id = :id", 403),
        ("UPDATE refresh_token SET revoked_at = now() WHERE user_id = :id", 401),
        ("DELETE FROM refresh_token WHERE user_id = :id", 401),
        ('DELETE FROM "user" WHERE id = :id', 401),
        # still served, under its new address
        ("UPDATE \"user\" SET email = 'renamed@example.com' WHERE id = :id", 200),
    ],
)
def test_every_change_that_matters_to_a_caller_is_notified(api, change, then):
    with caching(api) as cache:
        user_id = api.user("reader@example.com", permissions=[USERS_READ])
        tokens = api.login("reader@example.com")
        assert api.get("/users", tokens).status_code == 200
        assert cache.get(user_id, login_of(tokens)) is not None
        since = cache.generation
        with api.engine.begin() as connection:
            connection.execute(sa.text(change), {"id": user_id})
        heard(cache, since)
        assert cache.get(user_id, login_of(tokens)) is None
        assert api.get("/users", tokens).status_code == then
        if then == 200:
            kept = cache.get(user_id, login_of(tokens))
            assert kept is not None and kept.email == "renamed@example.com"


def test_changes_that_do_not_matter_keep_the_caller(api):
    with caching(api) as cache:
        user_id = api.user("reader@example.com", permissions=[USERS_READ])
        tokens = api.login("reader@example.com")
        assert api.get("/users", tokens).status_code == 200
        other = api.user("other@example.com")
        with api.engine.begin() as connection:
            # a new login, a name, another user's login ended: none changes this caller
            api.login("reader@example.com")
            connection.execute(
                sa.text("UPDATE \"user\" SET full_name = 'R' WHERE id = :id"), {"id": user_id}
            )
            connection.execute(
                sa.text("UPDATE refresh_token SET revoked_at = now() WHERE user_id = :id"),
                {"id": other},
            )
        assert cache.get(user_id, login_of(tokens)) is not None


def test_without_its_listener_every_caller_is_read_and_it_listens_again(api):
    with caching(api) as cache:
        user_id = api.user("reader@example.com", permissions=[USERS_READ])
        tokens = api.login("reader@example.com")
        assert api.get("/users", tokens).status_code == 200
        since = cache.generation
        with api.engine.begin() as connection:  # the listener's backend goes away
            stopped = connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query = 'LISTEN tecnorev_auth'"
                )
            ).scalars()
            assert list(stopped) == [True]
        with cache.heard:  # seen deaf, with nothing kept: every caller is read meanwhile
            assert cache.heard.wait_for(
                lambda: not cache.listening and cache.get(user_id, login_of(tokens)) is None,
                WAIT,
            )
        assert cache.generation > since
        assert api.get("/users", tokens).status_code == 200
        listening(cache)  # back (after a short wait), with nothing kept from before
        assert cache.get(user_id, login_of(tokens)) is None
        assert api.get("/users", tokens).status_code == 200
        assert cache.get(user_id, login_of(tokens)) is not None


def test_a_lookup_that_overlapped_a_notification_is_not_kept():
    cache = callers.CallerCache(sa.create_engine("sqlite://"), max_age=60)
    cache.listening = True
    caller = Principal(7, "a@example.com", frozenset({"users:read"}), login_id="L")
    started = cache.generation
    cache.forget(["8"])  # any notification while the caller was being read
    cache.keep(caller, started)
    assert cache.get(7, "L") is None
    cache.keep(caller, cache.generation)
    assert cache.get(7, "L") is caller
    cache.forget(["7"])
    assert cache.get(7, "L") is None

    expired = callers.CallerCache(sa.create_engine("sqlite://"), max_age=0.000001)
    expired.listening = True
    expired.keep(caller, expired.generation)
    time.sleep(0.001)  # at least a thousand times its age: the clock cannot miss it
    assert expired.get(7, "L") is None  # older than its age allows


def test_no_cache_on_sqlite_switched_off_or_behind_a_transaction_pooler(
    postgres_url, tmp_path, monkeypatch
):
    assert callers.background([sa.create_engine(f"sqlite:///{tmp_path}/x.db")]) is None
    postgres = sa.create_engine(postgres_url)
    monkeypatch.setenv("TECNOREV_CALLER_CACHE_SECONDS", "0")
    assert callers.background([postgres]) is None
    monkeypatch.setenv("TECNOREV_CALLER_CACHE_SECONDS", "5s")
    work = callers.background([postgres])
    assert work is not None and work.cache.max_age == 5.0
    work.cache.engine.dispose()
    from tecnorev.core.settings import get_settings

    monkeypatch.setenv("TECNOREV_DB_POOLER", "transaction")
    get_settings.cache_clear()
    try:
        assert callers.background([postgres]) is None
    finally:
        monkeypatch.delenv("TECNOREV_DB_POOLER")
        get_settings.cache_clear()
    postgres.dispose()
