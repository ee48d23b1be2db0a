import sqlalchemy as sa

from tecnorev.auth.models import User
from tecnorev.testing.auth import PASSWORD

NEW_PASSWORD = "a-new-and-longer-secret"


def stored_hash(api, user_id: int) -> str:
    return api.scalar(sa.select(User.hashed_password).where(User.id == user_id))


def test_changing_the_password_ends_every_login(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    this = api.login("clerk@example.com")
    other = api.login("clerk@example.com")

    response = api.send(
        "POST",
        "/password",
        this,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 204

    assert api.live_tokens(user_id) == 0
    for tokens in (this, other):
        me = api.get("/me", tokens)
        assert me.status_code == 401
        assert api.code(me) == "not_authenticated"
        refresh = api.refresh(tokens["refresh_token"])
        assert refresh.status_code == 401
        assert api.code(refresh) == "invalid_token"
    old = api.client.post(
        "/api/v1/auth/token", data={"username": "clerk@example.com", "password": PASSWORD}
    )
    assert old.status_code == 401
    assert api.code(old) == "invalid_credentials"
    assert api.get("/me", api.login("clerk@example.com", NEW_PASSWORD)).status_code == 200


def test_password_change_refusals_change_nothing(api):
    user_id = api.user("clerk@example.com", roles=["clerk"])
    tokens = api.login("clerk@example.com")
    before = stored_hash(api, user_id)
    refusals = [
        ({"current_password": "wrong-password", "new_password": NEW_PASSWORD}, "wrong_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "weak_password"),
        ({"current_password": PASSWORD, "new_password": "x" * 129}, "weak_password"),
        (
            {"current_password": PASSWORD, "new_password": "Clerk@Example.com"},
            "weak_password",
        ),
        (
            {"current_password": PASSWORD, "new_password": "nul\x00-in-the-middle"},
            "validation_error",
        ),
        ({"current_password": PASSWORD}, "validation_error"),
    ]
    for body, code in refusals:
        response = api.send("POST", "/password", tokens, json=body)
        assert response.status_code == 422, body
        assert api.code(response) == code, body

    assert stored_hash(api, user_id) == before
    assert api.live_tokens(user_id) == 1
    assert api.get("/me", tokens).status_code == 200


def test_password_change_and_logout_need_a_login(api):
    for path, body in [
        ("/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        ("/password", {}),
        ("/logout", None),
    ]:
        response = api.send("POST", path, json=body)
        assert response.status_code == 401, path
        assert api.code(response) == "not_authenticated"
