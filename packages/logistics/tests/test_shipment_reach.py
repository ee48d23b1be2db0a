"""Shipments are scoped by branch: ``shipments:manage`` acts on the shipments of the caller's
branches' orders, ``shipments:read_all`` on every branch's.  Another branch's shipment (or
order) is not found, and a refused request changes nothing."""

from __future__ import annotations

from tecnorev.logistics import permissions
from tecnorev.logistics.models import Shipment
from tecnorev.sales import permissions as sales_permissions
from tecnorev.sales.models import OrderStatus
from tecnorev.testing.auth import user_header


def test_the_clerk_acts_on_its_branchs_shipments_only(shop):
    here = shop.order()
    there = shop.order(branch_id=shop.other_branch_id)
    pending = shop.create(there, "TRK-N1").json()["id"]
    shipped = shop.create(shop.order(branch_id=shop.other_branch_id), "TRK-N2").json()["id"]
    assert shop.act(shipped, "ship").status_code == 200
    fresh = shop.order(branch_id=shop.other_branch_id)
    before = (shop.shipments(), [shop.order_status(o) for o in (there, fresh)])

    shop.refused(shop.get(f"/{pending}", who="clerk"), 404, "shipment_not_found")
    assert shop.get(who="clerk").json()["items"] == []
    assert shop.get(who="clerk", order_id=there).json()["items"] == []
    shop.refused(shop.create(fresh, "TRK-N3", who="clerk"), 404, "order_not_found")
    for shipment_id, action in ((pending, "ship"), (shipped, "deliver"), (pending, "cancel")):
        shop.refused(shop.act(shipment_id, action, who="clerk"), 404, "shipment_not_found")
    assert (shop.shipments(), [shop.order_status(o) for o in (there, fresh)]) == before

    # at its own branch, the whole life of a shipment
    mine = shop.create(here, "TRK-C1", who="clerk")
    assert mine.status_code == 201, mine.text
    sid = mine.json()["id"]
    assert [s["id"] for s in shop.get(who="clerk").json()["items"]] == [sid]
    assert shop.act(sid, "ship", who="clerk").status_code == 200
    assert shop.act(sid, "deliver", who="clerk").status_code == 200
    assert shop.order_status(here) is OrderStatus.DELIVERED


def test_every_branch_is_reached_with_shipments_read_all_only(shop):
    there = shop.order(branch_id=shop.other_branch_id)
    sid = shop.create(there, "TRK-N1").json()["id"]
    # orders:read_all reads every order, not every shipment; shipments:manage alone acts on none
    readers = {
        "orders reader": [sales_permissions.ORDERS_READ_ALL],
        "unassigned shipper": [permissions.SHIPMENTS_MANAGE],
    }
    for who, codes in readers.items():
        email = who.replace(" ", ".") + "@example.com"
        shop.headers[who] = user_header(shop.engine, email, permissions=codes)
        shop.refused(shop.get(f"/{sid}", who=who), 404, "shipment_not_found")
    shop.refused(shop.act(sid, "cancel", who="unassigned shipper"), 404, "shipment_not_found")

    shop.headers["dispatcher"] = user_header(
        shop.engine,
        "dispatcher@example.com",
        permissions=[permissions.SHIPMENTS_MANAGE, permissions.SHIPMENTS_READ_ALL],
    )
    assert shop.get(f"/{sid}", who="dispatcher").status_code == 200
    assert shop.act(sid, "cancel", who="dispatcher").status_code == 200
    assert shop.shipment(sid).status.value == "CANCELLED"


def test_staff_read_their_own_order_elsewhere_but_do_not_act_on_it(shop):
    """A clerk's own order at another branch is theirs as a customer: they read its shipment,
    and acting on it as staff is a 403 (it exists for them), not a 404."""
    clerk = shop.user_id("clerk@example.com")
    own = shop.order(branch_id=shop.other_branch_id, customer_id=clerk)
    sid = shop.create(own, "TRK-OWN").json()["id"]
    assert shop.get(f"/{sid}", who="clerk").status_code == 200
    shop.refused(shop.act(sid, "ship", who="clerk"), 403, "permission_denied")
    assert shop.shipment(sid).status.value == "PENDING"
    other = shop.order(branch_id=shop.other_branch_id, customer_id=clerk)
    shop.refused(shop.create(other, "TRK-OWN-2", who="clerk"), 403, "permission_denied")
    assert shop.count(Shipment) == 1
