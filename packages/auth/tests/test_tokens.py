import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.auth import security, service
from tecnorev.auth.config import AuthConfig, get_auth_config
from tecnorev.auth.errors import TokenReused
from tecnorev.auth.models import RefreshToken
from tecnorev.auth.security import create_access_token, decode_access_token, hash_refresh_token
from tecnorev.core.errors import NotAuthenticated
from tecnorev.testing.auth import PASSWORD, create_user
from tecnorev.testing.core import migrated_session


def family_of(api, refresh_token: str) -> str:
    return api.scalar(
        sa.select(RefreshToken.family_id).where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token)
        )
    )


def wait_until_blocked_on_a_lock(engine: sa.Engine, timeout: float = 10) -> None:
    """Return once another session of this database waits for a row lock."""
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("no session came to wait for a lock")


def test_refresh_rotates_and_the_old_token_then_counts_as_reuse(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    first = api.login("clerk@example.com")

    rotated = api.refresh(first["refresh_token"])
    assert rotated.status_code == 200
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert family_of(api, second["refresh_token"]) == family_of(api, first["refresh_token"])
    assert api.get("/me", second).status_code == 200
    assert api.live_tokens(user_id) == 1

    reused = api.refresh(first["refresh_token"])
    assert reused.status_code == 401
    assert api.code(reused) == "token_reused"


def test_reuse_revokes_the_whole_login_and_that_is_stored(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    first = api.login("clerk@example.com")
    other_login = api.login("clerk@example.com")
    second = api.refresh(first["refresh_token"]).json()
    third = api.refresh(second["refresh_token"]).json()
    family = family_of(api, first["refresh_token"])

    reused = api.refresh(first["refresh_token"])
    assert reused.status_code == 401
    assert api.code(reused) == "token_reused"

    # stored although the request failed: no token of the family is live any more
    assert api.count(RefreshToken, RefreshToken.family_id == family) == 3
    live = api.count(
        RefreshToken, RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None)
    )
    assert live == 0
    newest = api.refresh(third["refresh_token"])
    assert newest.status_code == 401
    assert api.code(newest) == "invalid_token"
    refused = api.get("/me", third)
    assert refused.status_code == 401
    assert api.code(refused) == "not_authenticated"
    # another login of the same user is untouched
    assert api.get("/me", other_login).status_code == 200
    assert api.live_tokens(user_id) == 1


def test_unknown_refresh_tokens_are_refused(api):
    unknown = api.refresh("no-such-token")
    assert unknown.status_code == 401
    assert api.code(unknown) == "invalid_token"
    nul = api.refresh("a\x00b")
    assert nul.status_code == 422
    assert api.code(nul) == "validation_error"
    extra = api.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": "x", "grant_type": "password"}
    )
    assert extra.status_code == 422
    assert api.code(extra) == "validation_error"


def test_logout_ends_the_login_and_nothing_else(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    tokens = api.login("clerk@example.com")
    other = api.login("clerk@example.com")

    response = api.send("POST", "/logout", tokens)
    assert response.status_code == 204
    assert response.content == b""

    refused = api.get("/me", tokens)
    assert refused.status_code == 401
    assert api.code(refused) == "not_authenticated"
    refresh = api.refresh(tokens["refresh_token"])
    assert refresh.status_code == 401
    assert api.code(refresh) == "invalid_token"
    again = api.send("POST", "/logout", tokens)
    assert again.status_code == 401
    assert api.code(again) == "not_authenticated"
    assert api.get("/me", other).status_code == 200
    assert api.live_tokens(user_id) == 1


def test_expired_access_token_is_refused_with_a_reason(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    tokens = api.login("clerk@example.com")
    expired_config = AuthConfig(
        secret_key=get_auth_config().secret_key,
        access_ttl=timedelta(minutes=-1),
        refresh_ttl=timedelta(days=1),
    )
    expired, _ = create_access_token(
        user_id, family_of(api, tokens["refresh_token"]), expired_config
    )

    response = api.get("/me", {"access_token": expired})
    assert response.status_code == 401
    assert api.code(response) == "not_authenticated"
    assert "expired" in response.json()["error"]["message"]


def test_a_token_checked_while_valid_is_refused_once_it_expires(monkeypatch):
    token, expires = create_access_token(7, "f" * 32)
    assert decode_access_token(token).user_id == 7  # checked, and kept
    later = SimpleNamespace(time=lambda: expires.timestamp() + 1)
    monkeypatch.setattr(security, "time", later)
    with pytest.raises(NotAuthenticated, match="expired"):
        decode_access_token(token)
    # another key does not take a token checked with the first
    monkeypatch.undo()
    other = AuthConfig(
        secret_key="another key of enough length for HS256 0123456789",
        access_ttl=timedelta(minutes=5),
        refresh_ttl=timedelta(days=1),
    )
    with pytest.raises(NotAuthenticated, match="not valid"):
        decode_access_token(token, other)


def test_expired_refresh_token_is_refused(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    config = get_auth_config()
    short = AuthConfig(
        secret_key=config.secret_key, access_ttl=config.access_ttl, refresh_ttl=timedelta(-1)
    )
    with Session(api.engine) as session:
        issued = service.open_login(session, user_id=user_id, config=short)
        session.commit()

    response = api.refresh(issued.refresh_token)
    assert response.status_code == 401
    assert api.code(response) == "invalid_token"
    assert "expired" in response.json()["error"]["message"]
    assert api.count(RefreshToken) == 1  # no successor was issued


def test_deactivated_users_cannot_refresh(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    with Session(api.engine) as session:
        issued = service.open_login(session, user_id=user_id)
        session.execute(
            sa.text('UPDATE "user" SET is_active = :no WHERE id = :id'),
            {"no": False, "id": user_id},
        )
        session.commit()
    response = api.refresh(issued.refresh_token)
    assert response.status_code == 401
    assert api.code(response) == "invalid_token"
    assert api.count(RefreshToken) == 1


def test_two_refreshes_racing_with_one_token_rotate_it_once(postgres_url):
    """The first holds the token's row lock; the second waits for it, then finds the token
    rotated and treats it as reuse, revoking the successor the first just issued."""
    with migrated_session(postgres_url, "auth@head") as setup:
        user = create_user(setup, "racer@example.com")
        issued = service.open_login(setup, user_id=user.id)
        setup.commit()
        engine = setup.get_bind()
        outcome: dict[str, str] = {}

        def second_refresh() -> None:
            with Session(engine) as session:
                try:
                    service.refresh_login(session, refresh_token=issued.refresh_token)
                    session.commit()
                    outcome["second"] = "rotated"
                except TokenReused:
                    session.commit()  # keep_changes: the family's revocation is stored
                    outcome["second"] = "reused"

        with Session(engine) as first:
            service.refresh_login(first, refresh_token=issued.refresh_token)
            racer = threading.Thread(target=second_refresh)
            racer.start()
            wait_until_blocked_on_a_lock(engine)
            first.commit()
        racer.join(10)

        assert outcome == {"second": "reused"}
        revoked = setup.execute(sa.select(RefreshToken.revoked_at)).scalars().all()
        assert len(revoked) == 2
        assert all(at is not None for at in revoked)


def test_a_refresh_racing_a_password_change_leaves_no_login_alive(postgres_url):
    """The password change waits for the refresh holding the user's lock, then revokes the
    successor token that refresh issued too."""
    with migrated_session(postgres_url, "auth@head") as setup:
        user = create_user(setup, "racer@example.com")
        issued = service.open_login(setup, user_id=user.id)
        setup.commit()
        engine, user_id = setup.get_bind(), user.id
        errors: list[BaseException] = []

        def change_password() -> None:
            try:
                with Session(engine) as session:
                    service.change_password(
                        session,
                        user_id=user_id,
                        current_password=PASSWORD,
                        new_password="another-good-password",
                    )
                    session.commit()
            except BaseException as exc:
                errors.append(exc)

        with Session(engine) as refreshing:
            service.refresh_login(refreshing, refresh_token=issued.refresh_token)
            changer = threading.Thread(target=change_password)
            changer.start()
            wait_until_blocked_on_a_lock(engine)
            refreshing.commit()
        changer.join(10)

        assert not changer.is_alive()
        assert errors == []
        live = setup.execute(
            sa.select(sa.func.count())
            .select_from(RefreshToken)
            .where(RefreshToken.revoked_at.is_(None))
        ).scalar()
        assert live == 0
        assert setup.execute(sa.select(sa.func.count()).select_from(RefreshToken)).scalar() == 2


@pytest.mark.parametrize("minutes", ["0", "-5", "abc"])
def test_token_lifetimes_must_be_positive(monkeypatch, minutes):
    from tecnorev.core.errors import ConfigError

    monkeypatch.setenv("TECNOREV_ACCESS_TOKEN_MINUTES", minutes)
    get_auth_config.cache_clear()
    try:
        with pytest.raises(ConfigError):
            get_auth_config()
    finally:
        monkeypatch.undo()
        get_auth_config.cache_clear()
