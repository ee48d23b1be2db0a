from __future__ import annotations

from sqlmodel import Session

from tecnorev.inventory.service import branch_ids_of
from tecnorev.testing.auth import create_user, user_header


def test_branches_are_created_listed_read_and_changed(shop):
    created = shop.post("/branches", {"code": "EAST", "name": "East side", "address": "1 Main St"})
    assert created.status_code == 201, created.text
    branch = created.json()
    assert branch["code"] == "EAST" and branch["is_active"] is True

    listed = shop.get("/branches", who="clerk")
    assert listed.status_code == 200
    assert [b["code"] for b in listed.json()["items"]] == ["EAST", "NORTH", "SOUTH"]

    read = shop.get(f"/branches/{branch['id']}", who="clerk")
    assert read.status_code == 200 and read.json()["address"] == "1 Main St"

    changed = shop.client.patch(
        shop.url(f"/branches/{branch['id']}"),
        json={"name": "East", "is_active": False},
        headers=shop.headers["manager"],
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() | {"updated_at": None} == branch | {
        "name": "East",
        "is_active": False,
        "updated_at": None,
    }


def test_a_branch_code_is_taken_once(shop):
    response = shop.post("/branches", {"code": "NORTH", "name": "Another north"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "branch_code_taken"
    assert shop.count("branch") == 2


def test_branch_requests_are_validated(shop):
    for body in (
        {"code": "", "name": "Empty code"},
        {"code": "BAD CODE", "name": "Space in code"},
        {"code": "NUL", "name": "a\x00b"},
        {"code": "X" * 33, "name": "Long code"},
        {"code": "EXTRA", "name": "Extra", "manager": "nobody"},
    ):
        response = shop.post("/branches", body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "validation_error"
    # the code is the branch's identity: it cannot be patched
    response = shop.client.patch(
        shop.url(f"/branches/{shop.branches[0]}"),
        json={"code": "RENAMED"},
        headers=shop.headers["manager"],
    )
    assert response.status_code == 422
    assert shop.count("branch") == 2


def test_unknown_branches_are_404(shop):
    for response in (
        shop.get("/branches/999"),
        shop.client.patch(
            shop.url("/branches/999"), json={"name": "x"}, headers=shop.headers["manager"]
        ),
        shop.get("/branches/999/staff"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "branch_not_found"
    assert shop.get(f"/branches/{2**31}").status_code == 422


def test_staff_are_assigned_listed_and_removed(shop):
    north, south = shop.branches
    with Session(shop.engine) as session:
        alice = create_user(session, "alice@example.com", roles=["clerk"]).id
        session.commit()
    staff_url = shop.url(f"/branches/{north}/staff/{alice}")
    manager = shop.headers["manager"]

    first = shop.client.put(staff_url, headers=manager)
    again = shop.client.put(staff_url, headers=manager)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json()
    assert first.json()["email"] == "alice@example.com"
    assert shop.client.put(shop.url(f"/branches/{south}/staff/{alice}"), headers=manager)

    listed = shop.get(f"/branches/{north}/staff", who="clerk")
    assert listed.status_code == 200
    assert [(s["user_id"], s["email"]) for s in listed.json()] == [(alice, "alice@example.com")]
    with Session(shop.engine) as session:
        assert branch_ids_of(session, alice) == {north, south}

    removed = shop.client.delete(staff_url, headers=manager)
    assert removed.status_code == 204
    missing = shop.client.delete(staff_url, headers=manager)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "staff_not_found"
    with Session(shop.engine) as session:
        assert branch_ids_of(session, alice) == {south}
        assert branch_ids_of(session, 999) == set()


def test_staff_of_unknown_users_or_branches_are_refused(shop):
    manager = shop.headers["manager"]
    unknown_user = shop.client.put(
        shop.url(f"/branches/{shop.branches[0]}/staff/999"), headers=manager
    )
    assert unknown_user.status_code == 404
    assert unknown_user.json()["error"]["code"] == "user_not_found"
    unknown_branch = shop.client.put(shop.url("/branches/999/staff/1"), headers=manager)
    assert unknown_branch.status_code == 404
    assert unknown_branch.json()["error"]["code"] == "branch_not_found"
    assert shop.count("branch_staff") == 0


def test_staff_lists_need_a_branch_or_inventory_permission(shop):
    path = f"/branches/{shop.branches[0]}/staff"
    customer = shop.get(path, who="customer")
    assert customer.status_code == 403
    assert customer.json()["error"]["code"] == "permission_denied"
    assert shop.get(path, who="anonymous").status_code == 401


def _closed_branch(shop) -> int:
    """A third branch, EAST, deactivated through the API."""
    east = shop.post("/branches", {"code": "EAST", "name": "East"}).json()["id"]
    closed = shop.client.patch(
        shop.url(f"/branches/{east}"), json={"is_active": False}, headers=shop.headers["manager"]
    )
    assert closed.status_code == 200, closed.text
    return east


def test_anyone_lists_and_reads_the_active_branches(shop):
    east = _closed_branch(shop)
    north, south = shop.branches
    # a customer needs a branch_id to order: signed in or not, the active branches are listed
    for who in ("anonymous", "customer"):
        listed = shop.get("/branches", who=who)
        assert listed.status_code == 200, (who, listed.text)
        items = listed.json()["items"]
        assert [(b["id"], b["code"]) for b in items] == [(north, "NORTH"), (south, "SOUTH")]
        assert all(b["is_active"] for b in items)
        read = shop.get(f"/branches/{north}", who=who)
        assert read.status_code == 200, (who, read.text)
        assert read.json() == items[0]
    assert east not in [b["id"] for b in shop.get("/branches", who="anonymous").json()["items"]]
    # asking for the closed ones needs the permission
    anonymous = shop.get("/branches", who="anonymous", is_active="false")
    _assert_refused_code(anonymous, 401, "not_authenticated")
    customer = shop.get("/branches", who="customer", is_active="false")
    _assert_refused_code(customer, 403, "permission_denied")


def test_holders_of_inventory_read_or_branches_manage_see_inactive_branches(shop):
    east = _closed_branch(shop)
    shop.headers["stock reader"] = user_header(
        shop.engine, "reader@example.com", permissions=["inventory:read"]
    )
    shop.headers["branch manager"] = user_header(
        shop.engine, "branches@example.com", permissions=["branches:manage"]
    )
    for who in ("stock reader", "branch manager", "clerk", "manager"):
        listed = shop.get("/branches", who=who)
        assert listed.status_code == 200, (who, listed.text)
        assert [(b["code"], b["is_active"]) for b in listed.json()["items"]] == [
            ("EAST", False),
            ("NORTH", True),
            ("SOUTH", True),
        ], who
        read = shop.get(f"/branches/{east}", who=who)
        assert read.status_code == 200, (who, read.text)
        assert read.json()["is_active"] is False


def test_an_inactive_branch_is_not_found_for_anyone_else(shop):
    east = _closed_branch(shop)
    for who in ("anonymous", "customer"):
        response = shop.get(f"/branches/{east}", who=who)
        assert response.status_code == 404, (who, response.text)
        # the same answer as for a branch that never existed
        assert response.json() == {
            "error": {
                "code": "branch_not_found",
                "message": f"there is no branch {east}",
                "details": {},
            }
        }
    unknown = shop.get("/branches/999", who="anonymous")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "branch_not_found"


def test_a_bad_token_on_the_public_branch_routes_is_still_401(shop):
    # a client whose token expired learns to refresh it instead of seeing the anonymous view
    shop.headers["bad token"] = {"Authorization": "Bearer not-a-token"}
    for path in ("/branches", f"/branches/{shop.branches[0]}"):
        response = shop.get(path, who="bad token")
        assert response.status_code == 401, (path, response.text)


def _assert_refused_code(response, status: int, code: str) -> None:
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
