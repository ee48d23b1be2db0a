from __future__ import annotations

from sqlmodel import Session

from tecnorev.logistics.models import Shipment
from tecnorev.logistics.service import cancel_order_shipments
from tecnorev.sales import service as sales
from tecnorev.sales.models import OrderStatus

OS = OrderStatus


def test_shipping_and_delivering_move_the_order(shop):
    order_id = shop.order()
    created = shop.create(order_id, "TRK-1")
    assert created.status_code == 201, created.text
    shipment = created.json()
    assert shipment["status"] == "PENDING" and shipment["order_id"] == order_id
    assert shipment["shipped_at"] is None and shipment["delivered_at"] is None
    assert shop.order_status(order_id) is OS.CONFIRMED

    shipped = shop.act(shipment["id"], "ship")
    assert shipped.status_code == 200, shipped.text
    assert shipped.json()["status"] == "SHIPPED" and shipped.json()["shipped_at"] is not None
    assert shop.order_status(order_id) is OS.SHIPPED

    delivered = shop.act(shipment["id"], "deliver")
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "DELIVERED"
    assert shop.order_status(order_id) is OS.DELIVERED
    stored = shop.shipment(shipment["id"])
    assert stored.shipped_at is not None and stored.delivered_at >= stored.shipped_at
    assert shop.get(f"/{shipment['id']}").json() == delivered.json()


def test_only_a_confirmed_order_gets_a_shipment(shop):
    for status in (OS.PENDING, OS.CANCELLED, OS.SHIPPED, OS.DELIVERED):
        error = shop.refused(
            shop.create(shop.order(status), f"T-{status}"), 409, "order_not_confirmed"
        )
        assert error["details"] == {"order_status": status.value}
    shop.refused(shop.create(999, "T-unknown"), 404, "order_not_found")
    assert shop.count(Shipment) == 0


def test_an_order_has_one_shipment_under_way(shop):
    order_id = shop.order()
    first = shop.create(order_id, "TRK-1").json()
    error = shop.refused(shop.create(order_id, "TRK-2"), 409, "order_already_has_shipment")
    assert error["details"] == {"shipment_id": first["id"]}
    assert shop.shipments() == [(order_id, "PENDING")]

    # A cancelled shipment no longer counts: the order can be shipped another way.
    assert shop.act(first["id"], "cancel").json()["status"] == "CANCELLED"
    assert shop.order_status(order_id) is OS.CONFIRMED
    second = shop.create(order_id, "TRK-2", carrier="UPS")
    assert second.status_code == 201, second.text
    assert shop.shipments() == [(order_id, "CANCELLED"), (order_id, "PENDING")]


def test_tracking_numbers_are_unique_per_carrier(shop):
    first, second, third = shop.order(), shop.order(), shop.order()
    assert shop.create(first, "SAME", carrier="DHL").status_code == 201
    error = shop.refused(shop.create(second, "SAME", carrier="DHL"), 409, "tracking_number_taken")
    assert error["details"] == {"carrier": "DHL", "tracking_number": "SAME"}
    assert shop.shipments() == [(first, "PENDING")]
    # Another carrier may use the same number; surrounding blanks are not part of it.
    assert shop.create(second, "SAME", carrier="UPS").status_code == 201
    shop.refused(shop.create(third, "  SAME ", carrier="UPS"), 409, "tracking_number_taken")
    assert shop.count(Shipment) == 2


def test_a_shipment_moves_only_forward(shop):
    order_id = shop.order()
    sid = shop.create(order_id, "TRK-1").json()["id"]

    def refused(action, start):
        error = shop.refused(shop.act(sid, action), 409, "invalid_shipment_transition")
        assert error["details"]["from"] == start
        assert shop.shipment(sid).status.value == start

    refused("deliver", "PENDING")
    assert shop.act(sid, "ship").status_code == 200
    refused("ship", "SHIPPED")
    refused("cancel", "SHIPPED")
    assert shop.order_status(order_id) is OS.SHIPPED
    assert shop.act(sid, "deliver").status_code == 200
    for action in ("ship", "deliver", "cancel"):
        refused(action, "DELIVERED")
    assert shop.order_status(order_id) is OS.DELIVERED

    cancelled = shop.create(shop.order(), "TRK-2").json()["id"]
    assert shop.act(cancelled, "cancel").status_code == 200
    for action in ("ship", "deliver", "cancel"):
        error = shop.refused(shop.act(cancelled, action), 409, "invalid_shipment_transition")
        assert error["details"]["from"] == "CANCELLED"
    for action in ("ship", "deliver", "cancel"):
        shop.refused(shop.act(999, action), 404, "shipment_not_found")


def test_shipping_an_order_cancelled_since_changes_nothing(shop):
    order_id = shop.order()
    sid = shop.create(order_id, "TRK-1").json()["id"]
    with Session(shop.engine) as session:
        sales.cancel_order(session, order_id=order_id)
        session.commit()
    # The order refuses the move (the sales rule), and the shipment's half is rolled back too.
    shop.refused(shop.act(sid, "ship"), 409, "invalid_transition")
    stored = shop.shipment(sid)
    assert stored.status.value == "PENDING" and stored.shipped_at is None
    assert shop.order_status(order_id) is OS.CANCELLED
    assert shop.act(sid, "cancel").status_code == 200


def test_cancelling_an_order_cancels_its_pending_shipment(shop):
    order_id = shop.order()
    sid = shop.create(order_id, "TRK-1").json()["id"]
    other = shop.create(shop.order(), "TRK-2").json()["id"]
    response = shop.client.post(
        f"/api/v1/sales/orders/{order_id}/cancel", headers=shop.headers["manager"]
    )
    assert response.status_code == 200, response.text
    # after the cancellation committed, through sales' event: nothing is left to ship
    assert shop.shipment(sid).status.value == "CANCELLED"
    assert shop.shipment(other).status.value == "PENDING"
    # delivered again, it changes nothing
    with Session(shop.engine) as session:
        assert cancel_order_shipments(session, order_id=order_id) == []
    # and the shipment may not be shipped any more
    shop.refused(shop.act(sid, "ship"), 409, "invalid_shipment_transition")


def test_who_reads_shipments(shop):
    mine = shop.order()
    sid = shop.create(mine, "TRK-1").json()["id"]
    for who in ("manager", "clerk", "customer"):
        response = shop.get(f"/{sid}", who=who)
        assert response.status_code == 200, (who, response.text)
        listed = shop.get(who=who, order_id=mine).json()
        assert [s["id"] for s in listed["items"]] == [sid], who
    # Someone else's shipment does not exist for a customer.
    shop.refused(shop.get(f"/{sid}", who="other"), 404, "shipment_not_found")
    assert shop.get(who="other").json() == {"items": [], "next_cursor": None}
    assert shop.get(who="other", order_id=mine).json()["items"] == []
    shop.refused(shop.get(f"/{sid}", who="anonymous"), 401, "not_authenticated")
    shop.refused(shop.get(who="anonymous"), 401, "not_authenticated")
    shop.refused(shop.get("/999"), 404, "shipment_not_found")


def test_listing_filters_and_pages(shop):
    orders = [shop.order() for _ in range(3)]
    ids = [shop.create(o, f"TRK-{i}").json()["id"] for i, o in enumerate(orders)]
    shop.act(ids[1], "ship")

    assert [s["id"] for s in shop.get(order_id=orders[2]).json()["items"]] == [ids[2]]
    assert [s["id"] for s in shop.get(status="SHIPPED").json()["items"]] == [ids[1]]
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = shop.get(**params).json()
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    shop.refused(shop.get(cursor="not-a-cursor"), 422, "invalid_cursor")
    shop.refused(shop.get(status="LOST"), 422, "validation_error")


def test_requests_out_of_bounds_are_refused_before_the_database(shop):
    order_id = shop.order()
    bad_bodies = [
        {"order_id": 2**31, "carrier": "DHL", "tracking_number": "T"},
        {"order_id": 0, "carrier": "DHL", "tracking_number": "T"},
        {"order_id": order_id, "carrier": "DHL", "tracking_number": "T\x00"},
        {"order_id": order_id, "carrier": "", "tracking_number": "T"},
        {"order_id": order_id, "carrier": "D" * 101, "tracking_number": "T"},
        {"order_id": order_id, "carrier": "DHL", "tracking_number": "T" * 101},
        {"order_id": order_id, "carrier": "DHL", "tracking_number": "T", "status": "DELIVERED"},
    ]
    for body in bad_bodies:
        response = shop.client.post(
            "/api/v1/logistics/shipments", json=body, headers=shop.headers["manager"]
        )
        shop.refused(response, 422, "validation_error")
    shop.refused(shop.act(2**31, "ship"), 422, "validation_error")
    shop.refused(shop.get(f"/{2**31}"), 422, "validation_error")
    shop.refused(shop.get(order_id=2**31), 422, "validation_error")
    assert shop.count(Shipment) == 0
