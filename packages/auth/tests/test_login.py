import sqlalchemy as sa
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlmodel import Session

from tecnorev.auth.models import RefreshToken, User
from tecnorev.auth.security import verify_password
from tecnorev.testing.auth import PASSWORD

AUTH = "/api/v1/auth"


def test_login_returns_tokens_that_identify_the_caller(api):
    user_id = api.user("clerk@example.com", roles=["manager"])
    response = api.client.post(
        f"{AUTH}/token", data={"username": "Clerk@Example.COM", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert tokens["refresh_token"] and tokens["access_token"]
    assert api.live_tokens(user_id) == 1

    me = api.get("/me", tokens)
    assert me.status_code == 200
    body = me.json()
    assert body["id"] == user_id
    assert body["email"] == "clerk@example.com"
    assert body["roles"] == ["manager"]
    # auth alone is installed here: its own codes, as the manager role holds them
    assert body["permissions"] == ["users:read"]


def test_bad_logins_all_get_the_same_answer_and_store_nothing(api):
    api.user("active@example.com", roles=["clerk"])
    api.user("gone@example.com", roles=["clerk"], active=False)
    attempts = [
        ("active@example.com", "not-the-password"),
        ("nobody@example.com", PASSWORD),
        ("gone@example.com", PASSWORD),
        ("nul\x00@example.com", PASSWORD),
        ("x" * 5000 + "@example.com", PASSWORD),
    ]
    answers = []
    for username, password in attempts:
        response = api.client.post(
            f"{AUTH}/token", data={"username": username, "password": password}
        )
        assert response.status_code == 401, username
        assert api.code(response) == "invalid_credentials"
        assert response.headers["www-authenticate"] == "Bearer"
        answers.append(response.json())
    assert all(answer == answers[0] for answer in answers)
    assert api.count(RefreshToken) == 0


def test_login_form_must_be_complete(api):
    response = api.client.post(f"{AUTH}/token", data={"username": "a@example.com"})
    assert response.status_code == 422
    assert api.code(response) == "validation_error"


def test_login_upgrades_a_hash_made_with_older_parameters(api):
    user_id = api.user("old@example.com")
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192),)).hash(PASSWORD)
    with Session(api.engine) as session:
        session.get(User, user_id).hashed_password = weak
        session.commit()

    api.login("old@example.com")

    stored = api.scalar(sa.select(User.hashed_password).where(User.id == user_id))
    assert stored != weak
    assert verify_password(PASSWORD, stored) == (True, None)


def test_anonymous_and_garbage_bearers_are_refused(api):
    anonymous = api.get("/me")
    assert anonymous.status_code == 401
    assert api.code(anonymous) == "not_authenticated"
    garbage = api.get("/me", {"access_token": "not.a.jwt"})
    assert garbage.status_code == 401
    assert api.code(garbage) == "not_authenticated"
