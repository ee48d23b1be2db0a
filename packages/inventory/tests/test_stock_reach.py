"""Stock is scoped by branch: staff read and change their branches' stock and movements only;
``inventory:read_all`` reaches every branch.  Changing another branch's stock is a 403 (the
branch is public, so a 404 would hide nothing) and changes nothing."""

from __future__ import annotations

from tecnorev.inventory import permissions
from tecnorev.testing.auth import user_header

CLERK = "clerk@example.com"


def _lines(quantities: dict[int, int]) -> list[dict[str, int]]:
    return [{"product_id": p, "quantity": q} for p, q in quantities.items()]


def _refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return error


def _state(shop) -> tuple[int, int]:
    return shop.count("inventory_movement"), shop.count("stock_entry")


def _listed(shop, path: str, who: str, **params) -> set[int]:
    response = shop.get(path, who=who, **params)
    assert response.status_code == 200, response.text
    return {row["branch_id"] for row in response.json()["items"]}


def test_staff_read_their_branches_stock_and_movements_only(shop):
    north, south = shop.branches
    lamp, _, _ = shop.products
    shop.receive(north, {lamp: 3})
    shop.receive(south, {lamp: 4})
    shop.headers["idle"] = user_header(shop.engine, "idle@example.com", roles=["clerk"])
    shop.headers["auditor"] = user_header(
        shop.engine,
        "auditor@example.com",
        permissions=[permissions.INVENTORY_READ, permissions.INVENTORY_READ_ALL],
    )
    shop.staff(CLERK, north)

    for path in ("/stock", "/movements"):
        assert _listed(shop, path, "clerk") == {north}
        assert _listed(shop, path, "clerk", branch_id=south) == set()
        assert _listed(shop, path, "idle") == set()  # staff of no branch: nothing
        assert _listed(shop, path, "auditor") == {north, south}
        assert _listed(shop, path, "manager") == {north, south}


def test_staff_change_stock_only_at_their_branches(shop):
    north, south = shop.branches
    lamp, _, _ = shop.products
    shop.receive(north, {lamp: 5})
    shop.receive(south, {lamp: 5})
    closed = shop.post("/branches", {"code": "OLD", "name": "Closed", "is_active": False})
    closed_id = closed.json()["id"]
    shop.staff(CLERK, north)
    before = _state(shop)

    for branch_id in (south, closed_id):
        receipt = {"branch_id": branch_id, "lines": _lines({lamp: 1}), "reference": "R"}
        error = _refused(shop.post("/receipts", receipt, who="clerk"), 403, "not_branch_staff")
        assert error["details"] == {"branch_id": branch_id}
        write_off = {"branch_id": branch_id, "product_id": lamp, "quantity_delta": -5}
        _refused(
            shop.post("/adjustments", {**write_off, "reason": "gone"}, who="clerk"),
            403,
            "not_branch_staff",
        )
    # a branch that does not exist is still not found
    receipt = {"branch_id": 999, "lines": _lines({lamp: 1}), "reference": "R"}
    _refused(shop.post("/receipts", receipt, who="clerk"), 404, "branch_not_found")
    assert _state(shop) == before
    assert (shop.stock(north, lamp), shop.stock(south, lamp)) == (5, 5)

    adjusted = shop.post(
        "/adjustments",
        {"branch_id": north, "product_id": lamp, "quantity_delta": -1, "reason": "broken"},
        who="clerk",
    )
    assert adjusted.status_code == 201, adjusted.text
    assert shop.stock(north, lamp) == 4


def test_a_transfer_leaves_from_a_branch_the_caller_reaches(shop):
    """A transfer is the source's act: staff of the source send stock anywhere (the
    destination only gains), and never pull stock out of another branch."""
    north, south = shop.branches
    lamp, _, _ = shop.products
    shop.receive(north, {lamp: 5})
    shop.receive(south, {lamp: 5})
    shop.headers["runner"] = user_header(
        shop.engine,
        "runner@example.com",
        permissions=[permissions.INVENTORY_READ, permissions.INVENTORY_TRANSFER],
    )
    shop.staff("runner@example.com", north)

    def transfer(source: int, destination: int):
        body = {
            "from_branch_id": source,
            "to_branch_id": destination,
            "lines": _lines({lamp: 2}),
            "reference": "TR",
        }
        return shop.post("/transfers", body, who="runner")

    before = _state(shop)
    _refused(transfer(south, north), 403, "not_branch_staff")
    _refused(transfer(999, north), 404, "branch_not_found")
    assert _state(shop) == before
    assert (shop.stock(north, lamp), shop.stock(south, lamp)) == (5, 5)

    sent = transfer(north, south)
    assert sent.status_code == 201, sent.text
    # the destination's stock is not the runner's to read
    assert {(s["branch_id"], s["quantity"]) for s in sent.json()["stock"]} == {(north, 3)}
    assert (shop.stock(north, lamp), shop.stock(south, lamp)) == (3, 7)
    moved = shop.get("/movements", who="runner", transfer_id=sent.json()["transfer_id"])
    assert [m["branch_id"] for m in moved.json()["items"]] == [north]
    moved = shop.get("/movements", transfer_id=sent.json()["transfer_id"])
    assert sorted(m["branch_id"] for m in moved.json()["items"]) == sorted([north, south])
