import sqlalchemy as sa

from tecnorev.auth.models import User, UserRole

NEW = {"email": "New.Clerk@Example.com", "full_name": "New Clerk", "password": "a-long-password"}


def test_admin_creates_reads_and_lists_users(api):
    admin_id = api.user("admin@example.com", roles=["admin"])
    admin = api.login("admin@example.com")

    created = api.send("POST", "/users", admin, json={**NEW, "roles": ["manager", "clerk"]})
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "new.clerk@example.com"
    assert user["roles"] == ["clerk", "manager"]
    assert user["is_active"] is True
    assert api.scalar(sa.select(User.created_by_id).where(User.id == user["id"])) == admin_id
    assert api.get("/me", api.login("NEW.CLERK@example.com", NEW["password"])).status_code == 200

    one = api.get(f"/users/{user['id']}", admin)
    assert one.status_code == 200
    assert one.json() == user

    for n in range(3):
        api.user(f"extra{n}@example.com", roles=["customer"])
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor is not None else {})
        page = api.get("/users", admin, params=params)
        assert page.status_code == 200
        body = page.json()
        seen += [u["email"] for u in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [
        "admin@example.com",
        "new.clerk@example.com",
        "extra0@example.com",
        "extra1@example.com",
        "extra2@example.com",
    ]

    missing = api.get("/users/999999", admin)
    assert missing.status_code == 404
    assert api.code(missing) == "user_not_found"


def test_roles_are_listed_with_their_permissions(api):
    api.user("manager@example.com", roles=["manager"])
    response = api.get("/roles", api.login("manager@example.com"))
    assert response.status_code == 200
    roles = {r["name"]: r for r in response.json()}
    assert set(roles) == {"admin", "manager", "clerk", "customer"}
    # auth alone is installed here: the roles grant its own codes; the other modules' codes
    # come with them (tests/test_permission_ownership.py)
    assert {name: role["permissions"] for name, role in roles.items()} == {
        "admin": ["users:manage", "users:read"],
        "manager": ["users:read"],
        "clerk": [],
        "customer": [],
    }


def test_creating_users_refuses_bad_input_and_stores_nothing(api):
    api.user("admin@example.com", roles=["admin"])
    api.user("taken@example.com")
    admin = api.login("admin@example.com")
    refusals = [
        ({**NEW, "email": "TAKEN@example.com"}, 409, "email_taken"),
        ({**NEW, "roles": ["clerk", "wizard"]}, 422, "unknown_role"),
        ({**NEW, "full_name": "nul\x00byte"}, 422, "validation_error"),
        ({**NEW, "full_name": "x" * 201}, 422, "validation_error"),
        ({**NEW, "email": "not-an-email"}, 422, "validation_error"),
        ({**NEW, "password": "short"}, 422, "weak_password"),
        ({**NEW, "password": NEW["email"]}, 422, "weak_password"),
        ({**NEW, "is_admin": True}, 422, "validation_error"),
    ]
    for body, status, code in refusals:
        response = api.send("POST", "/users", admin, json=body)
        assert response.status_code == status, body
        assert api.code(response) == code, body
    unknown = api.send("POST", "/users", admin, json={**NEW, "roles": ["wizard"]})
    assert unknown.json()["error"]["details"] == {"roles": ["wizard"]}
    assert api.count(User) == 2


def test_user_administration_needs_its_permissions(api):
    target = api.user("target@example.com", roles=["customer"])
    api.user("clerk@example.com", roles=["clerk"])
    api.user("manager@example.com", roles=["manager"])
    clerk = api.login("clerk@example.com")
    manager = api.login("manager@example.com")
    writes = [
        ("POST", "/users", {**NEW}),
        ("PATCH", f"/users/{target}", {"is_active": False}),
        ("PUT", f"/users/{target}/roles", {"roles": ["admin"]}),
    ]
    for method, path, body in writes:
        anonymous = api.send(method, path, json=body)
        assert anonymous.status_code == 401, path
        assert api.code(anonymous) == "not_authenticated"
        for caller in (clerk, manager):  # the manager may read users, not change them
            refused = api.send(method, path, caller, json=body)
            assert refused.status_code == 403, path
            assert api.code(refused) == "permission_denied"
    for path in ("/users", f"/users/{target}", "/roles"):
        refused = api.get(path, clerk)
        assert refused.status_code == 403, path
        assert api.code(refused) == "permission_denied"
        assert api.get(path, manager).status_code == 200

    assert api.count(User) == 3
    assert api.scalar(sa.select(User.is_active).where(User.id == target)) is True
    assert api.count(UserRole, UserRole.user_id == target) == 1


def test_deactivating_a_user_ends_their_logins(api):
    api.user("admin@example.com", roles=["admin"])
    clerk_id = api.user("clerk@example.com", roles=["clerk"])
    admin = api.login("admin@example.com")
    clerk = api.login("clerk@example.com")

    renamed = api.send("PATCH", f"/users/{clerk_id}", admin, json={"full_name": "Carla"})
    assert renamed.status_code == 200
    assert renamed.json()["full_name"] == "Carla"
    assert renamed.json()["is_active"] is True
    assert api.get("/me", clerk).status_code == 200

    off = api.send("PATCH", f"/users/{clerk_id}", admin, json={"is_active": False})
    assert off.status_code == 200
    assert off.json()["is_active"] is False
    assert off.json()["full_name"] == "Carla"
    assert api.live_tokens(clerk_id) == 0
    me = api.get("/me", clerk)
    assert me.status_code == 401
    assert api.code(me) == "not_authenticated"
    refresh = api.refresh(clerk["refresh_token"])
    assert refresh.status_code == 401
    assert api.code(refresh) == "invalid_token"

    on = api.send("PATCH", f"/users/{clerk_id}", admin, json={"is_active": True})
    assert on.status_code == 200
    assert api.get("/me", api.login("clerk@example.com")).status_code == 200

    bad = api.send("PATCH", f"/users/{clerk_id}", admin, json={"full_name": "a\x00b"})
    assert bad.status_code == 422
    assert api.code(bad) == "validation_error"
    missing = api.send("PATCH", "/users/999999", admin, json={"is_active": False})
    assert missing.status_code == 404
    assert api.code(missing) == "user_not_found"
    too_big = api.send("PATCH", f"/users/{2**31}", admin, json={"is_active": False})
    assert too_big.status_code == 422
    assert api.code(too_big) == "validation_error"


def test_roles_are_replaced_as_a_set_and_apply_at_once(api):
    api.user("admin@example.com", roles=["admin"])
    clerk_id = api.user("clerk@example.com", roles=["clerk"])
    admin = api.login("admin@example.com")
    clerk = api.login("clerk@example.com")
    assert api.get("/users", clerk).status_code == 403

    response = api.send(
        "PUT", f"/users/{clerk_id}/roles", admin, json={"roles": ["manager", "clerk", "manager"]}
    )
    assert response.status_code == 200
    assert response.json()["roles"] == ["clerk", "manager"]
    assert api.get("/users", clerk).status_code == 200  # the same token, new permissions

    unknown = api.send("PUT", f"/users/{clerk_id}/roles", admin, json={"roles": ["wizard"]})
    assert unknown.status_code == 422
    assert api.code(unknown) == "unknown_role"
    assert api.get(f"/users/{clerk_id}", admin).json()["roles"] == ["clerk", "manager"]

    emptied = api.send("PUT", f"/users/{clerk_id}/roles", admin, json={"roles": []})
    assert emptied.status_code == 200
    assert emptied.json()["roles"] == []
    assert api.count(UserRole, UserRole.user_id == clerk_id) == 0
    assert api.get("/users", clerk).status_code == 403


def test_administrators_cannot_lock_themselves_out(api):
    admin_id = api.user("admin@example.com", roles=["admin"])
    admin = api.login("admin@example.com")

    deactivate = api.send("PATCH", f"/users/{admin_id}", admin, json={"is_active": False})
    assert deactivate.status_code == 409
    assert api.code(deactivate) == "self_lockout"
    demote = api.send("PUT", f"/users/{admin_id}/roles", admin, json={"roles": ["manager"]})
    assert demote.status_code == 409
    assert api.code(demote) == "self_lockout"

    assert api.scalar(sa.select(User.is_active).where(User.id == admin_id)) is True
    assert api.get("/me", admin).json()["roles"] == ["admin"]
    more = api.send("PUT", f"/users/{admin_id}/roles", admin, json={"roles": ["admin", "clerk"]})
    assert more.status_code == 200
    assert more.json()["roles"] == ["admin", "clerk"]
