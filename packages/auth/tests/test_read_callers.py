"""A route that only reads looks its caller up in the thread that reads its page
(``deps.Caller``): the same refusals as ``require_permission``, and a route that never looks
its caller up answers 500, never its data."""

from __future__ import annotations

from typing import Annotated

from fastapi.testclient import TestClient
from sqlmodel import Session

from tecnorev.auth.deps import Caller, read_as
from tecnorev.auth.models import User
from tecnorev.auth.permissions import USERS_READ
from tecnorev.core.listing import read_page


def test_a_page_behind_a_login_refuses_as_require_permission_does(api):
    reader_id = api.user("reader@example.com", permissions=[USERS_READ])
    api.user("nobody@example.com", permissions=[])
    reader = api.login("reader@example.com")
    nobody = api.login("nobody@example.com")

    listed = api.get("/users", reader)
    assert listed.status_code == 200, listed.text
    assert {"reader@example.com", "nobody@example.com"} <= {
        user["email"] for user in listed.json()["items"]
    }
    denied = api.get("/users", nobody)
    assert (denied.status_code, api.code(denied)) == (403, "permission_denied")
    anonymous = api.get("/users")
    assert (anonymous.status_code, api.code(anonymous)) == (401, "not_authenticated")

    # read on the primary at every request: a login that ended, a user deactivated
    assert api.send("POST", "/logout", reader).status_code == 204
    ended = api.get("/users", reader)
    assert (ended.status_code, api.code(ended)) == (401, "not_authenticated")
    again = api.login("reader@example.com")
    with Session(api.engine) as session:
        user = session.get(User, reader_id)
        assert user is not None
        user.is_active = False
        session.commit()
    gone = api.get("/users", again)
    assert (gone.status_code, api.code(gone)) == (401, "not_authenticated")


def test_a_route_that_never_looks_its_caller_up_answers_500(api):
    app = api.client.app

    @app.get("/unchecked")
    async def unchecked(caller: Annotated[Caller, read_as()]) -> object:
        return await read_page(lambda: b'{"secret": true}')

    api.user("clerk@example.com", permissions=[])
    tokens = api.login("clerk@example.com")
    # as a server answers it: the error is logged, the client gets a 500 and nothing else
    client = TestClient(app, raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    response = client.get("/unchecked", headers=headers)
    assert response.status_code == 500
    assert b"secret" not in response.content
    assert api.code(response) == "internal_error"
