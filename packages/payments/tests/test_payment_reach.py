"""Payments are scoped by branch: ``payments:manage`` records payments for the orders of the
caller's branches, ``payments:read_all`` reaches every branch's.  Another branch's order (or
payment) is not found, and a refused payment stores nothing."""

from __future__ import annotations

from tecnorev.payments import permissions
from tecnorev.payments.models import Payment
from tecnorev.sales.models import OrderStatus
from tecnorev.testing.auth import user_header

CASHIER = "cashier@example.com"


def _cashier(shop, *codes: str) -> None:
    shop.headers["cashier"] = user_header(
        shop.engine, CASHIER, permissions=[permissions.PAYMENTS_MANAGE, *codes]
    )


def test_branch_staff_take_payments_for_their_branches_orders_only(shop):
    far = shop.branch("FAR")
    _cashier(shop)
    shop.staff(CASHIER, shop.branch_id)
    here, there = shop.order(), shop.order(branch_id=far)
    paid_there = shop.pay(there, "1", "ch_far").json()["id"]

    shop.refused(shop.pay(there, "1", "ch_1", who="cashier"), 404, "order_not_found")
    shop.refused(shop.pay(999, "1", "ch_1", who="cashier"), 404, "order_not_found")
    shop.refused(shop.get(f"/{paid_there}", who="cashier"), 404, "payment_not_found")
    assert shop.get(who="cashier").json()["items"] == []
    assert shop.count(Payment) == 1

    paid = shop.pay(here, "39.80", "ch_2", who="cashier")
    assert paid.status_code == 201, paid.text
    assert shop.order_status(here) is OrderStatus.CONFIRMED
    assert [p["id"] for p in shop.get(who="cashier").json()["items"]] == [paid.json()["id"]]
    assert shop.order_status(there) is OrderStatus.PENDING


def test_payments_read_all_reaches_every_branch(shop):
    far = shop.branch("FAR")
    there = shop.order(branch_id=far)
    _cashier(shop)  # staff of no branch: payments:manage acts nowhere
    shop.refused(shop.pay(there, "1", "ch_1", who="cashier"), 404, "order_not_found")
    shop.headers["provider"] = user_header(
        shop.engine,
        "provider@example.com",
        permissions=[permissions.PAYMENTS_MANAGE, permissions.PAYMENTS_READ_ALL],
    )
    paid = shop.pay(there, "1", "ch_1", who="provider")
    assert paid.status_code == 201, paid.text
    assert shop.get(f"/{paid.json()['id']}", who="provider").status_code == 200


def test_staff_pay_their_own_order_elsewhere_only_as_a_customer_would(shop):
    """A cashier's own order at another branch is theirs to read: recording a payment for
    it as staff is a 403 (it exists for them), not a 404."""
    far = shop.branch("FAR")
    _cashier(shop)
    cashier = shop.staff(CASHIER, shop.branch_id)
    own = shop.order(branch_id=far, customer_id=cashier)
    shop.refused(shop.pay(own, "1", "ch_1", who="cashier"), 403, "permission_denied")
    assert shop.count(Payment) == 0
