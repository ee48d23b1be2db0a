"""auth knows its own codes and composes the rest from the installed modules' descriptors."""

from tecnorev.auth.permissions import PERMISSIONS, declared


def test_a_grant_of_a_code_no_installed_module_declares_is_ignored(api):
    # e.g. the grants of a module uninstalled, or set aside with 'tecnorev db forget'
    api.user("mixed@example.com", permissions=["users:read", "ghost:read"])
    tokens = api.login("mixed@example.com")
    me = api.get("/me", tokens)
    assert me.status_code == 200, me.text
    assert me.json()["permissions"] == ["users:read"]
    roles = api.get("/roles", tokens)
    assert roles.status_code == 200
    assert not any("ghost:read" in role["permissions"] for role in roles.json())


def test_the_installed_modules_codes_are_listed_with_their_owner(api):
    api.user("reader@example.com", permissions=["users:read"])
    listed = api.get("/permissions", api.login("reader@example.com"))
    assert listed.status_code == 200, listed.text
    by_code = {entry["code"]: entry for entry in listed.json()}
    assert set(by_code) == set(declared())
    manage = next(p for p in PERMISSIONS if p.code == "users:manage")
    assert by_code["users:manage"] == {
        "code": "users:manage",
        "module": "auth",
        "description": manage.description,
        "default_roles": ["admin"],
    }
    assert api.get("/permissions").status_code == 401
