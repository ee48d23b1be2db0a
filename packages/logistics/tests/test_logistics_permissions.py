from __future__ import annotations

from tecnorev.logistics import permissions
from tecnorev.logistics.models import Shipment
from tecnorev.testing.auth import all_permissions_but, user_header

# Every route of this module that changes data, and the permission it demands.
WRITES = {
    ("POST", "/shipments"): permissions.SHIPMENTS_MANAGE,
    ("POST", "/shipments/{shipment_id}/ship"): permissions.SHIPMENTS_MANAGE,
    ("POST", "/shipments/{shipment_id}/deliver"): permissions.SHIPMENTS_MANAGE,
    ("POST", "/shipments/{shipment_id}/cancel"): permissions.SHIPMENTS_MANAGE,
}


def _logistics_writes(app) -> set[tuple[str, str]]:
    prefix = "/api/v1/logistics"
    return {
        (method.upper(), path.removeprefix(prefix))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(prefix + "/")
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }


def test_every_write_is_refused_without_its_permission(shop):
    assert _logistics_writes(shop.client.app) == set(WRITES)
    order_id = shop.order()
    sid = shop.create(order_id, "TRK-1").json()["id"]
    before = shop.shipments()
    almost = user_header(
        shop.engine,
        "all-but@example.com",
        permissions=all_permissions_but(permissions.SHIPMENTS_MANAGE),
    )
    body = {"order_id": order_id, "carrier": "UPS", "tracking_number": "TRK-2"}
    for (method, path), _ in WRITES.items():
        url = "/api/v1/logistics" + path.format(shipment_id=sid)
        for headers, status, code in (
            ({}, 401, "not_authenticated"),
            (almost, 403, "permission_denied"),
        ):
            response = shop.client.request(method, url, json=body, headers=headers)
            assert response.status_code == status, (method, path, response.text)
            assert response.json()["error"]["code"] == code
    assert shop.shipments() == before
    assert shop.count(Shipment) == 1


def test_a_customer_reads_but_never_changes_shipments(shop):
    sid = shop.create(shop.order(), "TRK-1").json()["id"]
    for action in ("ship", "deliver", "cancel"):
        shop.refused(shop.act(sid, action, who="customer"), 403, "permission_denied")
    shop.refused(shop.create(shop.order(), "TRK-2", who="customer"), 403, "permission_denied")
    assert shop.get(f"/{sid}", who="customer").json()["status"] == "PENDING"
    assert shop.count(Shipment) == 1
