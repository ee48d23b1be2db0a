from __future__ import annotations

from tecnorev.inventory import permissions
from tecnorev.testing.auth import all_permissions_but, user_header

# Every route of this module that changes data, and the permission it demands.
WRITES = {
    ("POST", "/branches"): permissions.BRANCHES_MANAGE,
    ("PATCH", "/branches/{branch_id}"): permissions.BRANCHES_MANAGE,
    ("PUT", "/branches/{branch_id}/staff/{user_id}"): permissions.BRANCHES_MANAGE,
    ("DELETE", "/branches/{branch_id}/staff/{user_id}"): permissions.BRANCHES_MANAGE,
    ("POST", "/receipts"): permissions.INVENTORY_ADJUST,
    ("POST", "/adjustments"): permissions.INVENTORY_ADJUST,
    ("POST", "/transfers"): permissions.INVENTORY_TRANSFER,
}
VALID_BODIES = {
    "/branches": {"code": "EAST", "name": "East"},
    "/branches/{branch_id}": {"name": "Renamed"},
    "/receipts": {"branch_id": 1, "lines": [{"product_id": 1, "quantity": 1}], "reference": "R"},
    "/adjustments": {"branch_id": 1, "product_id": 1, "quantity_delta": 1, "reason": "recount"},
    "/transfers": {
        "from_branch_id": 1,
        "to_branch_id": 2,
        "lines": [{"product_id": 1, "quantity": 1}],
        "reference": "T",
    },
}


def _inventory_writes(app) -> set[tuple[str, str]]:
    prefix = "/api/v1/inventory"
    return {
        (method.upper(), path.removeprefix(prefix))
        for path, operations in app.openapi()["paths"].items()
        if path.startswith(prefix + "/")
        for method in operations
        if method in {"post", "put", "patch", "delete"}
    }


def test_every_write_is_refused_without_its_permission(shop):
    assert _inventory_writes(shop.client.app) == set(WRITES)
    before = {t: shop.count(t) for t in ("branch", "branch_staff", "inventory_movement")}
    almost = {
        permission: user_header(
            shop.engine, f"all-but-{i}@example.com", permissions=all_permissions_but(permission)
        )
        for i, permission in enumerate(sorted(set(WRITES.values())))
    }
    for (method, path), permission in WRITES.items():
        url = shop.url(path.format(branch_id=shop.branches[0], user_id=1))
        for headers, status, code in (
            ({}, 401, "not_authenticated"),
            (almost[permission], 403, "permission_denied"),
        ):
            response = shop.client.request(
                method, url, json=VALID_BODIES.get(path), headers=headers
            )
            assert response.status_code == status, (method, path, response.text)
            assert response.json()["error"]["code"] == code
    assert {t: shop.count(t) for t in before} == before
