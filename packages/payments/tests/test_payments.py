from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from tecnorev.auth.models import User
from tecnorev.inventory.models import Branch, BranchStaff
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.sales.models import OrderStatus

OS = OrderStatus
P = PaymentStatus


def test_full_payment_confirms_the_order(shop):
    order_id = shop.order(quantity=2)  # 39.80
    response = shop.pay(order_id, "39.80", "ch_1")
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["status"] == "SUCCEEDED" and payment["amount"] == "39.80"
    assert (payment["order_id"], payment["currency"]) == (order_id, "USD")
    assert (payment["provider"], payment["provider_reference"]) == ("card", "ch_1")
    order = shop.order_row(order_id)
    assert order.status is OS.CONFIRMED and order.confirmed_at is not None
    assert shop.get(f"/{payment['id']}").json() == payment


def test_partial_payments_confirm_only_once_they_reach_the_total(shop):
    order_id = shop.order(quantity=2)  # 39.80
    assert shop.pay(order_id, "10", "ch_1").status_code == 201
    assert shop.order_status(order_id) is OS.PENDING
    assert shop.pay(order_id, "29.79", "ch_2").status_code == 201
    assert shop.order_status(order_id) is OS.PENDING
    assert shop.pay(order_id, "0.01", "ch_3").status_code == 201
    assert shop.order_status(order_id) is OS.CONFIRMED
    assert shop.payments(order_id) == [
        (Decimal("10.00"), P.SUCCEEDED),
        (Decimal("29.79"), P.SUCCEEDED),
        (Decimal("0.01"), P.SUCCEEDED),
    ]


def test_paying_more_than_the_total_is_refused(shop):
    order_id = shop.order(quantity=2)  # 39.80
    error = shop.refused(shop.pay(order_id, "39.81", "ch_1"), 422, "overpayment")
    assert error["details"] == {"total": "39.80", "paid": "0.00", "outstanding": "39.80"}
    assert shop.count(Payment) == 0
    assert shop.pay(order_id, "30", "ch_2").status_code == 201
    error = shop.refused(shop.pay(order_id, "9.81", "ch_3"), 422, "overpayment")
    assert error["details"] == {"total": "39.80", "paid": "30.00", "outstanding": "9.80"}
    assert shop.payments(order_id) == [(Decimal("30.00"), P.SUCCEEDED)]
    assert shop.order_status(order_id) is OS.PENDING
    # Once paid in full, nothing more is taken.
    assert shop.pay(order_id, "9.80", "ch_4").status_code == 201
    shop.refused(shop.pay(order_id, "0.01", "ch_5"), 422, "overpayment")
    assert shop.count(Payment) == 2


def test_a_provider_reference_is_recorded_once(shop):
    first, second = shop.order(), shop.order()
    assert shop.pay(first, "1", "ch_1").status_code == 201
    for order_id in (first, second):  # a repeated callback, or the reference on another order
        error = shop.refused(shop.pay(order_id, "1", "ch_1"), 409, "payment_reference_taken")
        assert error["details"] == {"provider": "card", "provider_reference": "ch_1"}
    assert shop.count(Payment) == 1
    # The reference is unique per provider only.
    assert shop.pay(second, "1", "ch_1", provider="wallet").status_code == 201
    assert shop.count(Payment) == 2


def test_a_cancelled_order_takes_no_payment(shop):
    order_id = shop.order(OS.CANCELLED)
    shop.refused(shop.pay(order_id, "1", "ch_1"), 409, "order_cancelled")
    shop.refused(shop.pay(999, "1", "ch_2"), 404, "order_not_found")
    assert shop.count(Payment) == 0


def test_an_order_confirmed_or_shipped_already_is_paid_without_changing_it(shop):
    for status in (OS.CONFIRMED, OS.SHIPPED):
        order_id = shop.order(status, quantity=1)  # 19.90
        assert shop.pay(order_id, "19.90", f"ch_{status}").status_code == 201
        assert shop.order_status(order_id) is status


def test_an_order_is_paid_in_the_stores_currency(shop):
    order_id = shop.order()
    error = shop.refused(shop.pay(order_id, "1", "ch_1", currency="EUR"), 422, "currency_mismatch")
    assert error["details"] == {"currency": "USD"}  # TECNOREV_CURRENCY's default
    assert shop.count(Payment) == 0
    paid = shop.pay(order_id, "1", "ch_2", currency=None)  # left out: the store's
    assert (paid.status_code, paid.json()["currency"]) == (201, "USD")


def test_who_reads_payments(shop):
    mine = shop.order()
    pid = shop.pay(mine, "5", "ch_1").json()["id"]
    for who in ("manager", "customer"):
        response = shop.get(f"/{pid}", who=who)
        assert response.status_code == 200, (who, response.text)
        listed = shop.get(who=who, order_id=mine).json()
        assert [p["id"] for p in listed["items"]] == [pid], who
    # Someone else's payment does not exist for a customer, nor for a clerk of no branch: the
    # seeded clerk holds neither payments:manage nor orders:read_all.
    for who in ("other", "clerk"):
        shop.refused(shop.get(f"/{pid}", who=who), 404, "payment_not_found")
        assert shop.get(who=who, order_id=mine).json()["items"] == []
    assert shop.get(who="other").json() == {"items": [], "next_cursor": None}
    shop.refused(shop.get(f"/{pid}", who="anonymous"), 401, "not_authenticated")
    shop.refused(shop.get(who="anonymous"), 401, "not_authenticated")
    shop.refused(shop.get("/999"), 404, "payment_not_found")


def test_branch_staff_read_the_payments_of_their_branches_orders(shop):
    """A payment is visible to whoever may read its order: the seeded clerk, once staff of
    the order's branch, reads it; staff of another branch do not."""
    pid = shop.pay(shop.order(), "5", "ch_1").json()["id"]
    shop.refused(shop.get(f"/{pid}", who="clerk"), 404, "payment_not_found")
    with Session(shop.engine) as session:
        clerk = session.exec(select(User.id).where(User.email == "clerk@example.com")).one()
        elsewhere = Branch(code="FAR", name="Far away")
        session.add_all([BranchStaff(branch_id=shop.branch_id, user_id=clerk), elsewhere])
        session.commit()
        elsewhere_id = elsewhere.id
    assert shop.get(f"/{pid}", who="clerk").status_code == 200
    assert [p["id"] for p in shop.get(who="clerk").json()["items"]] == [pid]
    with Session(shop.engine) as session:
        session.exec(sa.delete(BranchStaff).where(BranchStaff.user_id == clerk))
        session.add(BranchStaff(branch_id=elsewhere_id, user_id=clerk))
        session.commit()
    shop.refused(shop.get(f"/{pid}", who="clerk"), 404, "payment_not_found")


def test_listing_filters_and_pages(shop):
    orders = [shop.order() for _ in range(3)]
    ids = [shop.pay(o, "1", f"ch_{i}").json()["id"] for i, o in enumerate(orders)]
    assert [p["id"] for p in shop.get(order_id=orders[1]).json()["items"]] == [ids[1]]
    assert shop.get(status="REFUNDED").json()["items"] == []
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = shop.get(**params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    shop.refused(shop.get(cursor="not-a-cursor"), 422, "invalid_cursor")
    shop.refused(shop.get(limit=0), 422, "validation_error")


def test_requests_out_of_bounds_are_refused_before_the_database(shop):
    order_id = shop.order()
    good = {
        "order_id": order_id,
        "amount": "1.00",
        "currency": "USD",
        "provider": "card",
        "provider_reference": "ch_1",
    }
    bad = [
        {"amount": "0"},
        {"amount": "0.00"},
        {"amount": "-1"},
        {"amount": "1.001"},
        {"amount": "10000000000.00"},  # more than Numeric(12, 2) holds
        {"amount": "NaN"},
        {"currency": "usd"},
        {"currency": "US"},
        {"currency": "EURO"},
        {"order_id": 2**31},
        {"provider": ""},
        {"provider": "p" * 51},
        {"provider_reference": "r" * 129},
        {"provider_reference": "ch\x00"},
        {"status": "REFUNDED"},
    ]
    for change in bad:
        response = shop.client.post(
            "/api/v1/payments", json=good | change, headers=shop.headers["manager"]
        )
        shop.refused(response, 422, "validation_error")
    shop.refused(shop.get(f"/{2**31}"), 422, "validation_error")
    shop.refused(shop.get(order_id=0), 422, "validation_error")
    assert shop.count(Payment) == 0
    assert shop.order_status(order_id) is OS.PENDING


def test_the_paths_of_earlier_releases_redirect_keeping_method_body_and_query(shop):
    listed = shop.client.get(
        "/api/v1/payments/payments", params={"limit": 1}, follow_redirects=False
    )
    assert (listed.status_code, listed.headers["location"]) == (308, "/api/v1/payments?limit=1")
    one = shop.client.get("/api/v1/payments/payments/7", follow_redirects=False)
    assert (one.status_code, one.headers["location"]) == (308, "/api/v1/payments/7")
    paths = shop.client.app.openapi()["paths"]
    assert not any(path.startswith("/api/v1/payments/payments") for path in paths)
