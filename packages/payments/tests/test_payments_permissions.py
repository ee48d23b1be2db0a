from __future__ import annotations

from tecnorev.payments import permissions
from tecnorev.payments.models import Payment
from tecnorev.sales.models import OrderStatus
from tecnorev.testing.auth import all_permissions_but, user_header

# Every route of this module that changes data, and the permission it demands.
WRITES = {("POST", ""): permissions.PAYMENTS_MANAGE}


def _payments_writes(app) -> set[tuple[str, str]]:
    prefix = "/api/v1/payments"
    return {
        (method.upper(), path.removeprefix(prefix))
        for path, operations in app.openapi()["paths"].items()
        if path == prefix or path.startswith(prefix + "/")
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }


def test_every_write_is_refused_without_its_permission(shop):
    assert _payments_writes(shop.client.app) == set(WRITES)
    order_id = shop.order()
    almost = user_header(
        shop.engine,
        "all-but@example.com",
        permissions=all_permissions_but(permissions.PAYMENTS_MANAGE),
    )
    body = {
        "order_id": order_id,
        "amount": "39.80",
        "currency": "USD",
        "provider": "card",
        "provider_reference": "ch_1",
    }
    for (method, path), _ in WRITES.items():
        for headers, status, code in (
            ({}, 401, "not_authenticated"),
            (almost, 403, "permission_denied"),
            (shop.headers["customer"], 403, "permission_denied"),
        ):
            response = shop.client.request(
                method, "/api/v1/payments" + path, json=body, headers=headers
            )
            assert response.status_code == status, (method, path, response.text)
            assert response.json()["error"]["code"] == code
    assert shop.count(Payment) == 0
    assert shop.order_status(order_id) is OrderStatus.PENDING
