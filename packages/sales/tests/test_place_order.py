from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest

from tecnorev.inventory.models import MovementReason
from tecnorev.sales.models import CouponKind

ORDERS = "/api/v1/sales/orders"


@dataclass
class World:
    shop: object
    branch: int
    lamp: int  # 19.90, 10 in stock
    chair: int  # 45.00, 10 in stock
    customer_id: int
    customer: dict

    def place(self, *lines, coupon=None, key=None, headers=None, branch=None):
        payload = {
            "branch_id": branch or self.branch,
            "items": [{"product_id": p, "quantity": q} for p, q in lines],
        }
        if coupon is not None:
            payload["coupon_code"] = coupon
        extra = {"Idempotency-Key": key} if key is not None else {}
        return self.shop.client.post(
            ORDERS, json=payload, headers={**(headers or self.customer), **extra}
        )

    def stock(self, product):
        return self.shop.stock(self.branch, product)


@pytest.fixture
def world(shop):
    branch = shop.branch()
    lamp = shop.product("LAMP", "19.90")
    chair = shop.product("CHAIR", "45.00")
    shop.receive(branch, lamp, 10)
    shop.receive(branch, chair, 10)
    customer_id, customer = shop.user("customer@example.com", roles=["customer"])
    return World(shop, branch, lamp, chair, customer_id, customer)


def assert_refused(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


def assert_nothing_stored(world, coupon_id=None, times_used=0):
    assert world.shop.orders() == 0
    assert world.shop.order_items() == 0
    assert world.stock(world.lamp) == 10
    assert world.stock(world.chair) == 10
    assert len(world.shop.ledger(world.branch, world.lamp)) == 1
    if coupon_id is not None:
        assert world.shop.times_used(coupon_id) == times_used


def test_an_order_snapshots_prices_and_takes_stock_through_the_ledger(world):
    response = world.place((world.lamp, 2), (world.chair, 1))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "PENDING"
    assert order["customer_id"] == world.customer_id
    assert order["branch_id"] == world.branch
    assert (order["subtotal"], order["discount"], order["total"]) == ("84.80", "0.00", "84.80")
    assert order["coupon_id"] is None
    assert order["items"] == [
        {"product_id": world.lamp, "quantity": 2, "unit_price": "19.90", "line_total": "39.80"},
        {"product_id": world.chair, "quantity": 1, "unit_price": "45.00", "line_total": "45.00"},
    ]
    assert world.stock(world.lamp) == 8
    assert world.stock(world.chair) == 9
    sale = (-2, MovementReason.SALE, f"order:{order['id']}")
    assert world.shop.ledger(world.branch, world.lamp)[-1] == sale


def test_lines_of_the_same_product_are_merged(world):
    response = world.place((world.lamp, 1), (world.chair, 1), (world.lamp, 2))
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [(i["product_id"], i["quantity"]) for i in items] == [(world.lamp, 3), (world.chair, 1)]
    assert world.stock(world.lamp) == 7


def test_a_later_price_change_does_not_rewrite_the_order(world):
    from sqlmodel import Session

    from tecnorev.catalog.models import Product

    order = world.place((world.lamp, 1)).json()
    with Session(world.shop.engine) as session:
        session.get(Product, world.lamp).price = Decimal("99.00")
        session.commit()
    fetched = world.shop.client.get(f"{ORDERS}/{order['id']}", headers=world.customer).json()
    assert fetched["items"][0]["unit_price"] == "19.90"
    assert fetched["total"] == "19.90"


def test_unknown_and_inactive_products_are_unavailable(world):
    retired = world.shop.product("RETIRED", "5.00", active=False)
    world.shop.receive(world.branch, retired, 5)
    error = assert_refused(
        world.place((world.lamp, 1), (retired, 1), (424242, 1)), 422, "product_unavailable"
    )
    assert error["details"] == {"product_ids": [retired, 424242]}
    assert_nothing_stored(world)
    assert world.stock(retired) == 5


def test_an_order_beyond_the_stock_takes_nothing(world):
    coupon_id = world.shop.coupon("SAVE", usage_limit=1)
    response = world.place((world.lamp, 1), (world.chair, 11), coupon="SAVE")
    error = assert_refused(response, 409, "insufficient_stock")
    assert error["details"] == {
        "shortages": [{"product_id": world.chair, "requested": 11, "available": 10}]
    }
    assert_nothing_stored(world, coupon_id, 0)


def test_an_order_too_large_for_the_money_columns_is_refused(world):
    jewel = world.shop.product("JEWEL", "9999999999.99")
    world.shop.receive(world.branch, jewel, 5)
    error = assert_refused(world.place((jewel, 2)), 422, "order_too_large")
    assert error["details"] == {"subtotal": "19999999999.98"}
    assert_nothing_stored(world)
    assert world.shop.stock(world.branch, jewel) == 5
    response = world.place((jewel, 1))
    assert response.status_code == 201, response.text
    assert response.json()["total"] == "9999999999.99"


def test_a_product_never_stocked_at_the_branch_is_insufficient(world):
    desk = world.shop.product("DESK", "120.00")
    assert_refused(world.place((desk, 1)), 409, "insufficient_stock")
    assert_nothing_stored(world)


def test_unknown_and_inactive_branches_are_refused(world):
    assert_refused(world.place((world.lamp, 1), branch=999), 404, "branch_not_found")
    closed = world.shop.branch("OLD", active=False)
    world.shop.receive(closed, world.lamp, 3)
    assert_refused(world.place((world.lamp, 1), branch=closed), 422, "branch_inactive")
    assert_nothing_stored(world)
    assert world.shop.stock(closed, world.lamp) == 3


MALFORMED = [
    {"branch_id": 1, "items": []},
    {"branch_id": 1},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 0}]},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": -1}]},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1_000_001}]},
    {"branch_id": 1, "items": [{"product_id": 2**31, "quantity": 1}]},
    {"branch_id": 2**31, "items": [{"product_id": 1, "quantity": 1}]},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1.5}]},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1}], "coupon_code": "A\x00"},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1}], "coupon_code": "A" * 41},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1}], "price": "0.01"},
    {"branch_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 101},
]


def test_malformed_orders_are_validation_errors(world):
    for payload in MALFORMED:
        response = world.shop.client.post(ORDERS, json=payload, headers=world.customer)
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["error"]["code"] == "validation_error"
    assert_nothing_stored(world)


def test_placing_needs_orders_place(world):
    _, nobody = world.shop.user("n@example.com", permissions=["orders:read_all"])
    assert_refused(world.place((world.lamp, 1), headers=nobody), 403, "permission_denied")
    response = world.shop.client.post(ORDERS, json={"branch_id": 1, "items": []})
    assert_refused(response, 401, "not_authenticated")
    assert_nothing_stored(world)


# --- coupons -------------------------------------------------------------------------------


DISCOUNTS = [
    # half-up: 5% of 0.10 is 0.005, which rounds up to a cent
    ("PERCENT", "5", [("dime", 1)], "0.10", "0.01"),
    ("PERCENT", "33.33", [("ten", 1)], "10.00", "3.33"),
    ("PERCENT", "12.5", [("lamp", 1)], "19.90", "2.49"),
    ("PERCENT", "15", [("lamp", 3)], "59.70", "8.96"),
    ("PERCENT", "100", [("lamp", 2)], "39.80", "39.80"),
    ("FIXED", "5.55", [("lamp", 1), ("chair", 1)], "64.90", "5.55"),
    # a fixed amount is capped at the subtotal: the total never goes negative
    ("FIXED", "50", [("lamp", 1)], "19.90", "19.90"),
]


def test_a_coupon_discounts_the_subtotal_and_counts_one_use(world):
    products = {
        "lamp": world.lamp,
        "chair": world.chair,
        "dime": world.shop.product("DIME", "0.10"),
        "ten": world.shop.product("TEN", "10.00"),
    }
    for product in products.values():
        world.shop.receive(world.branch, product, 10)
    for n, (kind, value, lines, subtotal, discount) in enumerate(DISCOUNTS):
        coupon_id = world.shop.coupon(f"SAVE{n}", CouponKind(kind), value, usage_limit=2)
        response = world.place(*[(products[p], q) for p, q in lines], coupon=f"save{n}")
        assert response.status_code == 201, (kind, value, response.text)
        order = response.json()
        assert order["coupon_id"] == coupon_id
        assert (order["subtotal"], order["discount"]) == (subtotal, discount), (kind, value)
        assert Decimal(order["total"]) == Decimal(subtotal) - Decimal(discount)
        assert world.shop.times_used(coupon_id) == 1


def test_a_coupon_that_does_not_apply_refuses_the_whole_order(world):
    for n, (coupon, status, code) in enumerate(
        [
            ({"code": "OTHER"}, 404, "coupon_not_found"),
            ({"is_active": False}, 422, "coupon_inactive"),
            ({"ends_in": timedelta(seconds=-1)}, 422, "coupon_expired"),
            ({"starts_in": timedelta(hours=1)}, 422, "coupon_not_yet_valid"),
            ({"usage_limit": 3, "times_used": 3}, 409, "coupon_exhausted"),
        ]
    ):
        options = {"code": f"SAVE{n}", "usage_limit": 5, "times_used": 0, **coupon}
        coupon_id = world.shop.coupon(**options)
        response = world.place((world.lamp, 1), (world.chair, 2), coupon=f"save{n}")
        assert_refused(response, status, code)
        assert_nothing_stored(world, coupon_id, options["times_used"])


def test_the_last_use_of_a_coupon_is_the_limit(world):
    coupon_id = world.shop.coupon("ONCE", usage_limit=1)
    assert world.place((world.lamp, 1), coupon="ONCE").status_code == 201
    assert_refused(world.place((world.lamp, 1), coupon="ONCE"), 409, "coupon_exhausted")
    assert world.shop.times_used(coupon_id) == 1
    assert world.shop.orders() == 1
    assert world.stock(world.lamp) == 9


# --- idempotency ---------------------------------------------------------------------------


def test_a_replayed_key_returns_the_first_order_and_stores_nothing_more(world):
    coupon_id = world.shop.coupon("SAVE", usage_limit=5)
    first = world.place((world.lamp, 2), coupon="SAVE", key="order-1")
    assert first.status_code == 201, first.text
    assert "Idempotency-Replayed" not in first.headers

    # same request: lines in another order or split, coupon in another case
    again = world.place((world.lamp, 1), (world.lamp, 1), coupon="save", key="order-1")
    assert again.status_code == 200, again.text
    assert again.headers["Idempotency-Replayed"] == "true"
    assert again.json() == first.json()
    assert world.shop.orders() == 1
    assert world.stock(world.lamp) == 8
    assert world.shop.times_used(coupon_id) == 1


def test_a_key_reused_for_another_order_is_refused(world):
    world.shop.coupon("SAVE")
    world.shop.coupon("OTHER")
    other_branch = world.shop.branch("NTH")
    world.shop.receive(other_branch, world.lamp, 5)
    assert world.place((world.lamp, 2), coupon="SAVE", key="k").status_code == 201
    for lines, coupon, branch in [
        ([(world.lamp, 3)], "SAVE", None),
        ([(world.lamp, 2), (world.chair, 1)], "SAVE", None),
        ([(world.lamp, 2)], None, None),
        ([(world.lamp, 2)], "OTHER", None),
        ([(world.lamp, 2)], "SAVE", other_branch),
    ]:
        response = world.place(*lines, coupon=coupon, key="k", branch=branch)
        error = assert_refused(response, 409, "idempotency_key_reused")
        assert error["details"]["order_id"]
    assert world.shop.orders() == 1
    assert world.stock(world.lamp) == 8
    assert world.stock(world.chair) == 10
    assert world.shop.stock(other_branch, world.lamp) == 5


def test_keys_belong_to_their_customer(world):
    _, other = world.shop.user("other@example.com", roles=["customer"])
    a = world.place((world.lamp, 1), key="same")
    b = world.place((world.lamp, 1), key="same", headers=other)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]
    assert world.stock(world.lamp) == 8


def test_a_refused_placement_does_not_use_up_its_key(world):
    assert_refused(world.place((world.lamp, 11), key="retry-me"), 409, "insufficient_stock")
    response = world.place((world.lamp, 1), key="retry-me")
    assert response.status_code == 201
    assert response.json()["idempotency_key"] == "retry-me"


def test_a_malformed_key_is_a_validation_error(world):
    for key in ["", "   ", "k" * 65]:
        assert_refused(world.place((world.lamp, 1), key=key), 422, "validation_error")
    assert_nothing_stored(world)
