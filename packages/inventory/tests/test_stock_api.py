from __future__ import annotations

import sqlalchemy as sa


def _lines(quantities: dict[int, int]) -> list[dict[str, int]]:
    return [{"product_id": p, "quantity": q} for p, q in quantities.items()]


def _movements(shop, **where) -> list[dict]:
    query = "SELECT * FROM inventory_movement"
    if where:
        query += " WHERE " + " AND ".join(f"{k} = :{k}" for k in where)
    with shop.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(query + " ORDER BY id"), where)]


def _user_id(shop, email: str) -> int:
    with shop.engine.connect() as conn:
        return conn.execute(
            sa.text('SELECT id FROM "user" WHERE email = :e'), {"e": email}
        ).scalar_one()


def _assert_refused(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    return error


# --- receipts -------------------------------------------------------------------------------


def test_a_receipt_raises_stock_and_records_who_and_why(shop):
    north, _ = shop.branches
    lamp, desk, _ = shop.products
    shop.staff("clerk@example.com", north)
    response = shop.post(
        "/receipts",
        {
            "branch_id": north,
            "lines": _lines({lamp: 5, desk: 2}) + _lines({lamp: 1}),
            "reference": "DN-1001",
            "note": "first delivery",
        },
        who="clerk",
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["reference"] == "DN-1001"
    assert [(s["product_id"], s["quantity"]) for s in body["stock"]] == [(lamp, 6), (desk, 2)]
    shop.receive(north, {lamp: 4})
    assert shop.stock(north, lamp) == 10

    clerk = _user_id(shop, "clerk@example.com")
    first = _movements(shop, reference="DN-1001")
    assert [(m["product_id"], m["quantity_delta"], m["reason"]) for m in first] == [
        (lamp, 6, "RECEIPT"),
        (desk, 2, "RECEIPT"),
    ]
    assert {(m["created_by_id"], m["note"], m["transfer_id"]) for m in first} == {
        (clerk, "first delivery", None)
    }
    shop.assert_ledger_matches()


def test_a_receipt_is_refused_whole(shop):
    north, _ = shop.branches
    lamp, _, _ = shop.products
    inactive = shop.post("/branches", {"code": "OLD", "name": "Closed", "is_active": False})
    cases = [
        (
            {"branch_id": north, "lines": _lines({lamp: 1, 999: 1}), "reference": "R"},
            422,
            "unknown_product",
        ),
        ({"branch_id": 999, "lines": _lines({lamp: 1}), "reference": "R"}, 404, "branch_not_found"),
        (
            {"branch_id": inactive.json()["id"], "lines": _lines({lamp: 1}), "reference": "R"},
            422,
            "branch_inactive",
        ),
        (
            {"branch_id": north, "lines": _lines({lamp: 0}), "reference": "R"},
            422,
            "validation_error",
        ),
        (
            {"branch_id": north, "lines": _lines({lamp: -1}), "reference": "R"},
            422,
            "validation_error",
        ),
        ({"branch_id": north, "lines": [], "reference": "R"}, 422, "validation_error"),
        (
            {"branch_id": north, "lines": _lines({lamp: 1}), "reference": ""},
            422,
            "validation_error",
        ),
        ({"branch_id": north, "lines": _lines({lamp: 1})}, 422, "validation_error"),
        (
            {"branch_id": north, "lines": _lines({lamp: 10**7}), "reference": "R"},
            422,
            "validation_error",
        ),
        (
            {"branch_id": north, "lines": _lines({2**31: 1}), "reference": "R"},
            422,
            "validation_error",
        ),
        (
            {"branch_id": north, "lines": _lines({lamp: 1}), "reference": "R\x00"},
            422,
            "validation_error",
        ),
    ]
    for body, status, code in cases:
        error = _assert_refused(shop.post("/receipts", body), status, code)
        if code == "unknown_product":
            assert error["details"] == {"product_ids": [999]}
    assert shop.count("stock_entry") == 0
    assert shop.count("inventory_movement") == 0


# --- adjustments ----------------------------------------------------------------------------


def test_adjustments_correct_counts_either_way(shop):
    north, _ = shop.branches
    lamp, desk, _ = shop.products
    shop.receive(north, {lamp: 5})
    shop.staff("clerk@example.com", north)

    down = shop.post(
        "/adjustments",
        {"branch_id": north, "product_id": lamp, "quantity_delta": -2, "reason": "broken"},
        who="clerk",
    )
    assert down.status_code == 201, down.text
    assert down.json()["stock"]["quantity"] == 3
    up = shop.post(
        "/adjustments",
        {
            "branch_id": north,
            "product_id": desk,
            "quantity_delta": 4,
            "reason": "found in the back",
            "reference": "COUNT-7",
        },
    )
    assert up.status_code == 201 and up.json()["stock"]["quantity"] == 4
    to_zero = shop.post(
        "/adjustments",
        {"branch_id": north, "product_id": lamp, "quantity_delta": -3, "reason": "recount"},
    )
    assert to_zero.json()["stock"]["quantity"] == 0

    adjustments = _movements(shop, reason="ADJUSTMENT")
    assert [
        (m["product_id"], m["quantity_delta"], m["note"], m["reference"]) for m in adjustments
    ] == [
        (lamp, -2, "broken", ""),
        (desk, 4, "found in the back", "COUNT-7"),
        (lamp, -3, "recount", ""),
    ]
    assert adjustments[0]["created_by_id"] == _user_id(shop, "clerk@example.com")
    shop.assert_ledger_matches()


def test_an_adjustment_below_zero_is_refused(shop):
    north, south = shop.branches
    lamp, desk, _ = shop.products
    shop.receive(north, {lamp: 2})
    before = shop.count("inventory_movement")

    error = _assert_refused(
        shop.post(
            "/adjustments",
            {"branch_id": north, "product_id": lamp, "quantity_delta": -3, "reason": "lost"},
        ),
        409,
        "insufficient_stock",
    )
    assert error["details"] == {"shortages": [{"product_id": lamp, "requested": 3, "available": 2}]}
    # no stock row at all counts as none available
    error = _assert_refused(
        shop.post(
            "/adjustments",
            {"branch_id": south, "product_id": desk, "quantity_delta": -1, "reason": "lost"},
        ),
        409,
        "insufficient_stock",
    )
    assert error["details"] == {"shortages": [{"product_id": desk, "requested": 1, "available": 0}]}
    assert shop.stock(north, lamp) == 2 and shop.stock(south, desk) is None
    assert shop.count("inventory_movement") == before


def test_adjustment_requests_are_validated(shop):
    north, _ = shop.branches
    lamp, _, _ = shop.products
    base = {"branch_id": north, "product_id": lamp, "quantity_delta": 1, "reason": "recount"}
    cases = [
        ({**base, "quantity_delta": 0}, 422, "validation_error"),
        ({k: v for k, v in base.items() if k != "reason"}, 422, "validation_error"),
        ({**base, "reason": "   "}, 422, "validation_error"),
        ({**base, "quantity_delta": 2_000_000}, 422, "validation_error"),
        ({**base, "product_id": 999}, 422, "unknown_product"),
        ({**base, "branch_id": 999}, 404, "branch_not_found"),
    ]
    for body, status, code in cases:
        _assert_refused(shop.post("/adjustments", body), status, code)
    assert shop.count("inventory_movement") == 0 and shop.count("stock_entry") == 0


# --- transfers ------------------------------------------------------------------------------


def test_a_transfer_moves_stock_on_both_sides_under_one_id(shop):
    north, south = shop.branches
    lamp, desk, chair = shop.products
    shop.receive(north, {lamp: 5, desk: 3})
    shop.receive(south, {chair: 1})

    response = shop.post(
        "/transfers",
        {
            "from_branch_id": north,
            "to_branch_id": south,
            "lines": _lines({desk: 3, lamp: 2}),
            "reference": "TR-1",
            "note": "rebalancing",
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    transfer_id = body["transfer_id"]
    assert len(transfer_id) == 32
    assert {(s["branch_id"], s["product_id"], s["quantity"]) for s in body["stock"]} == {
        (north, lamp, 3),
        (north, desk, 0),
        (south, lamp, 2),
        (south, desk, 3),
    }
    moved = _movements(shop, transfer_id=transfer_id)
    assert sorted(
        (m["branch_id"], m["product_id"], m["quantity_delta"], m["reason"]) for m in moved
    ) == sorted(
        [
            (north, lamp, -2, "TRANSFER_OUT"),
            (north, desk, -3, "TRANSFER_OUT"),
            (south, lamp, 2, "TRANSFER_IN"),
            (south, desk, 3, "TRANSFER_IN"),
        ]
    )
    manager = _user_id(shop, "manager@example.com")
    assert {(m["reference"], m["note"], m["created_by_id"]) for m in moved} == {
        ("TR-1", "rebalancing", manager)
    }
    listed = shop.get("/movements", transfer_id=transfer_id)
    assert len(listed.json()["items"]) == 4
    shop.assert_ledger_matches()


def test_a_short_transfer_stores_nothing_on_either_side(shop):
    north, south = shop.branches
    lamp, desk, chair = shop.products
    shop.receive(north, {lamp: 5, desk: 1})
    shop.receive(south, {lamp: 1})
    before = (shop.count("inventory_movement"), shop.count("stock_entry"))

    # both directions: the two branches' rows are locked in id order, either side first
    for source, destination in ((north, south), (south, north)):
        error = _assert_refused(
            shop.post(
                "/transfers",
                {
                    "from_branch_id": source,
                    "to_branch_id": destination,
                    "lines": _lines({lamp: 1, desk: 2, chair: 1}),
                    "reference": "TR-2",
                },
            ),
            409,
            "insufficient_stock",
        )
        short = {
            d["product_id"]: (d["requested"], d["available"]) for d in error["details"]["shortages"]
        }
        assert short == (
            {desk: (2, 1), chair: (1, 0)} if source == north else {desk: (2, 0), chair: (1, 0)}
        )
    assert (shop.count("inventory_movement"), shop.count("stock_entry")) == before
    assert (shop.stock(north, lamp), shop.stock(north, desk), shop.stock(south, lamp)) == (5, 1, 1)


def test_transfers_are_refused_between_wrong_branches(shop):
    north, south = shop.branches
    lamp, _, _ = shop.products
    shop.receive(north, {lamp: 5})
    closed = shop.post("/branches", {"code": "OLD", "name": "Closed", "is_active": False})
    closed_id = closed.json()["id"]
    before = shop.count("inventory_movement")

    def transfer(source: int, destination: int, who: str = "manager"):
        body = {
            "from_branch_id": source,
            "to_branch_id": destination,
            "lines": _lines({lamp: 1}),
            "reference": "TR",
        }
        return shop.post("/transfers", body, who=who)

    _assert_refused(transfer(north, north), 422, "same_branch_transfer")
    _assert_refused(transfer(north, 999), 404, "branch_not_found")
    _assert_refused(transfer(999, north), 404, "branch_not_found")
    _assert_refused(transfer(north, closed_id), 422, "branch_inactive")
    _assert_refused(transfer(north, south, who="clerk"), 403, "permission_denied")
    assert shop.count("inventory_movement") == before

    # a closed branch can still be corrected and emptied
    shop.post(
        "/adjustments",
        {"branch_id": closed_id, "product_id": lamp, "quantity_delta": 1, "reason": "found"},
    )
    emptied = transfer(closed_id, south)
    assert emptied.status_code == 201, emptied.text
    assert shop.stock(closed_id, lamp) == 0 and shop.stock(south, lamp) == 1


# --- reads ----------------------------------------------------------------------------------


def test_stock_pages_by_cursor_and_filters(shop):
    north, south = shop.branches
    lamp, desk, chair = shop.products
    shop.receive(north, {lamp: 1, desk: 2, chair: 3})
    shop.receive(south, {lamp: 4})

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = shop.get("/stock", **params)
        assert page.status_code == 200, page.text
        seen += [(s["branch_id"], s["product_id"], s["quantity"]) for s in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(
        [(north, lamp, 1), (north, desk, 2), (north, chair, 3), (south, lamp, 4)]
    )
    assert len(seen) == 4

    by_product = shop.get("/stock", product_id=lamp).json()["items"]
    assert {(s["branch_id"], s["quantity"]) for s in by_product} == {(north, 1), (south, 4)}
    by_branch = shop.get("/stock", branch_id=south).json()
    assert [s["product_id"] for s in by_branch["items"]] == [lamp]
    assert by_branch["next_cursor"] is None
    assert shop.get("/stock", branch_id=north, product_id=chair).json()["items"][0]["quantity"] == 3

    for bad in (
        {"limit": 0},
        {"limit": 101},
        {"branch_id": 2**31},
        {"branch_id": "01"},
        {"sort": "product_id"},
        {"quantity_max": -1},
        {"location": "x"},
    ):
        _assert_refused(shop.get("/stock", **bad), 422, "validation_error")
    _assert_refused(shop.get("/stock", cursor=0), 422, "invalid_cursor")
    low = shop.get("/stock", quantity_max=3, sort="-quantity").json()["items"]
    assert [s["quantity"] for s in low] == sorted((s["quantity"] for s in low), reverse=True)
    assert low and all(s["quantity"] <= 3 for s in low)


def test_movements_page_newest_first(shop):
    north, south = shop.branches
    lamp, desk, _ = shop.products
    for reference in ("R-1", "R-2", "R-3"):
        shop.receive(north, {lamp: 1}, reference=reference)
    shop.receive(south, {desk: 1}, reference="R-S")

    shop.staff("clerk@example.com", north)
    first = shop.get("/movements", who="clerk", branch_id=north, product_id=lamp, limit=2).json()
    assert [m["reference"] for m in first["items"]] == ["R-3", "R-2"]
    rest = shop.get(
        "/movements", branch_id=north, product_id=lamp, limit=2, cursor=first["next_cursor"]
    ).json()
    assert [m["reference"] for m in rest["items"]] == ["R-1"] and rest["next_cursor"] is None
    assert [m["reference"] for m in shop.get("/movements").json()["items"]] == [
        "R-S",
        "R-3",
        "R-2",
        "R-1",
    ]
    assert [m["reference"] for m in shop.get("/movements", branch_id=south).json()["items"]] == [
        "R-S"
    ]
    assert shop.get("/movements", product_id=desk).json()["items"][0]["reason"] == "RECEIPT"


def test_stock_reads_need_inventory_read(shop):
    for path in ("/stock", "/movements"):
        _assert_refused(shop.get(path, who="customer"), 403, "permission_denied")
        _assert_refused(shop.get(path, who="anonymous"), 401, "not_authenticated")
