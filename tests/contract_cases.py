"""Seed data and one known-good request per operation, for the API contract test.

``World`` builds a small shop: users and logins through ``tecnorev.testing.auth``, and
through the API itself, as an admin, categories, products with images, branches with stock
and staff, a coupon, orders in every state, shipments and a payment.  ``KNOWN_GOOD`` maps each operation, ``(METHOD, path template)`` as the OpenAPI
document names it, to a function building a request that must succeed (2xx).  A new route
comes with its entry here, or the contract test fails.

The entries run in the order they are written: reads first, then creations, changes, state
transitions and deletions last.  An entry that changes or removes something makes its own
fresh objects (``world.new_*``), so it never depends on what an earlier entry did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from tecnorev.core.web import API_PREFIX
from tecnorev.testing.auth import PASSWORD, create_user, login_header, user_header

ADMIN_EMAIL = "admin@example.com"
CURRENCY = "USD"
NEW_PASSWORD = "a-different-long-passphrase"


@dataclass
class Call:
    """What a known-good case sends (the operation's method and path are its key)."""

    path_parameters: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] | None = None  # default: the admin's
    media_type: str | None = None  # default: JSON when there is a body


class World:
    """The seed data, and helpers making fresh objects through the API."""

    def __init__(self, client: TestClient, engine: sa.Engine) -> None:
        self.client = client
        self.engine = engine
        self._serial = itertools.count(1)
        self.admin = user_header(engine, ADMIN_EMAIL, roles=["admin"])
        self.customer = user_header(engine, "customer@example.com", roles=["customer"])
        self.admin_id = self.send("GET", "/auth/me")["id"]
        self.customer_id = self.send("GET", "/auth/me", headers=self.customer)["id"]

        self.category_id = self.new_category()
        self.subcategory_id = self.new_category(parent_id=self.category_id)
        self.branch_id = self.new_branch()
        self.other_branch_id = self.new_branch()
        self.product_id = self.new_product(category_id=self.subcategory_id)
        self.inactive_product_id = self.new_product(is_active=False)
        self.image_id = self.new_image(self.product_id)
        self.new_image(self.product_id)
        self.send("PUT", f"/inventory/branches/{self.branch_id}/staff/{self.customer_id}")
        self.coupon_code = self.unique("SAVE").upper()
        self.coupon_id = self.new_coupon(code=self.coupon_code)

        self.pending_order = self.new_order(headers=self.customer, coupon_code=self.coupon_code)
        self.paid_order = self.new_order(headers=self.customer)
        self.payment_id = self.new_payment(self.paid_order)  # paying it all confirms it
        self.shipment_id = self.new_shipment(status="pending")
        self.shipped_id = self.new_shipment(status="shipped")
        self.delivered_id = self.new_shipment(status="delivered")
        self.unshipped_id = self.confirmed_order()["id"]
        self.cancelled_order = self.new_order()
        self.send("POST", f"/sales/orders/{self.cancelled_order['id']}/cancel")

    # --- plumbing ----------------------------------------------------------------------

    def send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """A request that must succeed (as the admin unless ``headers`` say otherwise); the
        response's body."""
        response = self.client.request(
            method, API_PREFIX + path, headers=self.admin if headers is None else headers, **kwargs
        )
        assert 200 <= response.status_code < 300, (
            f"seeding: {method} {API_PREFIX}{path} {kwargs} answered "
            f"{response.status_code}: {response.text}"
        )
        return response.json() if response.content else None

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._serial)}"

    # --- fresh objects -----------------------------------------------------------------

    def new_user(self, *, roles: tuple[str, ...] = ("customer",)) -> int:
        """A user with the test password (stored directly: hashing it per user is slow)."""
        with Session(self.engine) as session:
            user_id = create_user(session, f"{self.unique('user')}@example.com", roles=roles).id
            session.commit()
        return user_id

    def log_in(self) -> dict[str, Any]:
        """A new login of the admin through the token endpoint: its body."""
        return self.send(
            "POST", "/auth/token", data={"username": ADMIN_EMAIL, "password": PASSWORD}
        )

    def login_header(self, user_id: int | None = None) -> dict[str, str]:
        """A new login of the user (default: the admin), opened without the password check
        (argon2 is slow on purpose)."""
        with Session(self.engine) as session:
            header = login_header(session, user_id or self.admin_id)
            session.commit()
        return header

    def new_category(self, *, parent_id: int | None = None) -> int:
        slug = self.unique("category")
        body = {"name": slug.title(), "slug": slug, "parent_id": parent_id}
        return self.send("POST", "/catalog/categories", json=body)["id"]

    def new_product(
        self, *, is_active: bool = True, category_id: int | None = None, stock: int = 1000
    ) -> int:
        sku = self.unique("SKU").upper()
        body = {
            "sku": sku,
            "name": f"Product {sku}",
            "description": "made for the contract test",
            "price": "19.90",
            "is_active": is_active,
            "category_id": category_id,
        }
        product_id = self.send("POST", "/catalog/products", json=body)["id"]
        if stock:
            self.receive(product_id, stock)
        return product_id

    def new_image(self, product_id: int) -> int:
        body = {"url": f"https://img.example.com/{self.unique('image')}.jpg", "alt_text": "front"}
        return self.send("POST", f"/catalog/products/{product_id}/images", json=body)["id"]

    def new_branch(self) -> int:
        code = self.unique("BR").upper()
        body = {"code": code, "name": f"Branch {code}", "address": "1 Main Street"}
        return self.send("POST", "/inventory/branches", json=body)["id"]

    def receive(self, product_id: int, quantity: int) -> None:
        """Stock of the product at the main branch."""
        body = {
            "branch_id": self.branch_id,
            "reference": self.unique("delivery"),
            "lines": [{"product_id": product_id, "quantity": quantity}],
        }
        self.send("POST", "/inventory/receipts", json=body)

    def new_coupon(self, *, code: str | None = None) -> int:
        body = {"code": code or self.unique("C"), "kind": "PERCENT", "value": "10"}
        return self.send("POST", "/sales/coupons", json=body)["id"]

    def order_body(self, coupon_code: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "branch_id": self.branch_id,
            "items": [{"product_id": self.product_id, "quantity": 1}],
        }
        if coupon_code:
            body["coupon_code"] = coupon_code
        return body

    def new_order(
        self, *, headers: dict[str, str] | None = None, coupon_code: str | None = None
    ) -> dict[str, Any]:
        """A PENDING order (the response body)."""
        return self.send(
            "POST", "/sales/orders", json=self.order_body(coupon_code), headers=headers
        )

    def confirmed_order(self) -> dict[str, Any]:
        order = self.new_order()
        return self.send("POST", f"/sales/orders/{order['id']}/confirm")

    def new_payment(self, order: dict[str, Any]) -> int:
        """The order's whole total, paid (which confirms a PENDING order)."""
        body = {
            "order_id": order["id"],
            "amount": order["total"],
            "currency": order["currency"],
            "provider": "contract-pay",
            "provider_reference": self.unique("ref"),
        }
        return self.send("POST", "/payments", json=body)["id"]

    def shipment_body(self, order_id: int) -> dict[str, Any]:
        return {"order_id": order_id, "carrier": "Correo", "tracking_number": self.unique("TRK")}

    def new_shipment(self, *, status: str = "pending") -> int:
        order = self.confirmed_order()
        shipment_id = self.send(
            "POST", "/logistics/shipments", json=self.shipment_body(order["id"])
        )["id"]
        steps = {"pending": [], "shipped": ["ship"], "delivered": ["ship", "deliver"]}[status]
        for step in steps:
            self.send("POST", f"/logistics/shipments/{shipment_id}/{step}")
        return shipment_id

    # --- for the fuzzing phase ---------------------------------------------------------

    def known_values(self) -> dict[str, list[Any]]:
        """Real ids (and coupon codes) per parameter name, so generated requests also reach
        past the 404s."""
        return {
            "coupon_code": [self.coupon_code],
            "user_id": [self.customer_id, self.admin_id],
            "category_id": [self.subcategory_id, self.category_id],
            "product_id": [self.product_id, self.inactive_product_id],
            "image_id": [self.image_id],
            "branch_id": [self.branch_id, self.other_branch_id],
            "coupon_id": [self.coupon_id],
            "order_id": [self.pending_order["id"], self.paid_order["id"], self.unshipped_id],
            "shipment_id": [self.shipment_id, self.shipped_id],
            "payment_id": [self.payment_id],
        }


SERVICE_PATHS = {"/health", "/ready"}
Builder = Callable[[World], Call]
KNOWN_GOOD: dict[tuple[str, str], Builder] = {}


def case(method: str, path: str) -> Callable[[Builder], Builder]:
    """Register the known-good case of ``method path`` (under ``/api/v1`` unless it is one of
    the service's own routes)."""
    key = (method, path if path in SERVICE_PATHS else API_PREFIX + path)

    def register(builder: Builder) -> Builder:
        assert key not in KNOWN_GOOD, f"two known-good cases for {key}"
        KNOWN_GOOD[key] = builder
        return builder

    return register


# --- the service -------------------------------------------------------------------------


@case("GET", "/health")
def _health(w: World) -> Call:
    return Call()


@case("GET", "/ready")
def _ready(w: World) -> Call:
    return Call()


# --- reads -------------------------------------------------------------------------------


@case("GET", "/auth/me")
def _me(w: World) -> Call:
    return Call()


@case("GET", "/auth/users")
def _list_users(w: World) -> Call:
    return Call(query={"limit": 2, "sort": "-email", "is_active": "true"})


@case("GET", "/auth/users/{user_id}")
def _get_user(w: World) -> Call:
    return Call(path_parameters={"user_id": w.customer_id})


@case("GET", "/auth/roles")
def _list_roles(w: World) -> Call:
    return Call()


@case("GET", "/auth/permissions")
def _list_permissions(w: World) -> Call:
    return Call()


@case("GET", "/catalog/categories")
def _list_categories(w: World) -> Call:
    return Call()


@case("GET", "/catalog/categories/{category_id}")
def _get_category(w: World) -> Call:
    return Call(path_parameters={"category_id": w.subcategory_id})


@case("GET", "/catalog/products")
def _list_products(w: World) -> Call:
    query = {
        "limit": 5,
        "category_id": w.category_id,
        "q": "sku",
        "is_active": "false",
        "sort": "-price",
        "price_min": "0",
        "price_max": "99.99",
    }
    return Call(query=query)


@case("GET", "/catalog/products/{product_id}")
def _get_product(w: World) -> Call:
    return Call(path_parameters={"product_id": w.product_id})


@case("GET", "/catalog/products/{product_id}/images")
def _list_images(w: World) -> Call:
    return Call(path_parameters={"product_id": w.product_id})


@case("GET", "/inventory/branches")
def _list_branches(w: World) -> Call:
    return Call()


@case("GET", "/inventory/branches/{branch_id}")
def _get_branch(w: World) -> Call:
    return Call(path_parameters={"branch_id": w.branch_id})


@case("GET", "/inventory/branches/{branch_id}/staff")
def _list_staff(w: World) -> Call:
    return Call(path_parameters={"branch_id": w.branch_id})


@case("GET", "/inventory/stock")
def _list_stock(w: World) -> Call:
    return Call(query={"branch_id": w.branch_id, "product_id": w.product_id, "limit": 10})


@case("GET", "/inventory/movements")
def _list_movements(w: World) -> Call:
    return Call(query={"branch_id": w.branch_id, "product_id": w.product_id, "limit": 10})


@case("GET", "/sales/coupons")
def _list_coupons(w: World) -> Call:
    return Call(query={"limit": 10})


@case("GET", "/sales/coupons/{coupon_id}")
def _get_coupon(w: World) -> Call:
    return Call(path_parameters={"coupon_id": w.coupon_id})


@case("GET", "/sales/orders")
def _list_orders(w: World) -> Call:
    return Call(query={"status": "PENDING", "limit": 10})


@case("GET", "/sales/orders/{order_id}")
def _get_order(w: World) -> Call:
    return Call(path_parameters={"order_id": w.pending_order["id"]})


@case("GET", "/logistics/shipments")
def _list_shipments(w: World) -> Call:
    return Call(query={"status": "SHIPPED", "limit": 10})


@case("GET", "/logistics/shipments/{shipment_id}")
def _get_shipment(w: World) -> Call:
    return Call(path_parameters={"shipment_id": w.delivered_id})


@case("GET", "/payments")
def _list_payments(w: World) -> Call:
    return Call(query={"order_id": w.paid_order["id"], "limit": 10})


@case("GET", "/payments/{payment_id}")
def _get_payment(w: World) -> Call:
    return Call(path_parameters={"payment_id": w.payment_id})


# --- creations ---------------------------------------------------------------------------


@case("POST", "/auth/token")
def _log_in(w: World) -> Call:
    return Call(
        body={"username": ADMIN_EMAIL, "password": PASSWORD},
        media_type="application/x-www-form-urlencoded",
        headers={},
    )


@case("POST", "/auth/refresh")
def _refresh(w: World) -> Call:
    return Call(body={"refresh_token": w.log_in()["refresh_token"]}, headers={})


@case("POST", "/auth/users")
def _create_user(w: World) -> Call:
    body = {
        "email": f"{w.unique('new')}@example.com",
        "password": PASSWORD,
        "full_name": "New Clerk",
        "roles": ["clerk"],
    }
    return Call(body=body)


@case("POST", "/catalog/categories")
def _create_category(w: World) -> Call:
    slug = w.unique("new-category")
    return Call(body={"name": "New category", "slug": slug, "parent_id": w.category_id})


@case("POST", "/catalog/products")
def _create_product(w: World) -> Call:
    body = {
        "sku": w.unique("NEW").upper(),
        "name": "New product",
        "description": "",
        "price": "5.50",
        "category_id": w.category_id,
    }
    return Call(body=body)


@case("POST", "/catalog/products/{product_id}/images")
def _add_image(w: World) -> Call:
    body = {"url": "https://img.example.com/first.png", "alt_text": "first", "position": 0}
    return Call(path_parameters={"product_id": w.new_product(stock=0)}, body=body)


@case("POST", "/inventory/branches")
def _create_branch(w: World) -> Call:
    return Call(body={"code": w.unique("NB").upper(), "name": "New branch", "address": ""})


@case("POST", "/inventory/receipts")
def _receive(w: World) -> Call:
    body = {
        "branch_id": w.branch_id,
        "reference": "supplier note 17",
        "note": "",
        "lines": [{"product_id": w.product_id, "quantity": 3}],
    }
    return Call(body=body)


@case("POST", "/inventory/adjustments")
def _adjust(w: World) -> Call:
    body = {
        "branch_id": w.branch_id,
        "product_id": w.product_id,
        "quantity_delta": -1,
        "reason": "one found broken",
    }
    return Call(body=body)


@case("POST", "/inventory/transfers")
def _transfer(w: World) -> Call:
    body = {
        "from_branch_id": w.branch_id,
        "to_branch_id": w.other_branch_id,
        "reference": "weekly restock",
        "lines": [{"product_id": w.product_id, "quantity": 2}],
    }
    return Call(body=body)


@case("POST", "/sales/coupons")
def _create_coupon(w: World) -> Call:
    body = {
        "code": w.unique("fixed"),
        "kind": "FIXED",
        "value": "2.00",
        "valid_from": "2024-01-01T00:00:00Z",
        "usage_limit": 10,
    }
    return Call(body=body)


@case("POST", "/sales/orders")
def _place_order(w: World) -> Call:
    return Call(
        body=w.order_body(w.coupon_code),
        headers={**w.customer, "Idempotency-Key": w.unique("checkout")},
    )


@case("POST", "/logistics/shipments")
def _create_shipment(w: World) -> Call:
    return Call(body=w.shipment_body(w.confirmed_order()["id"]))


@case("POST", "/payments")
def _record_payment(w: World) -> Call:
    order = w.new_order()
    body = {
        "order_id": order["id"],
        "amount": "1.00",  # a part: the order stays PENDING
        "currency": CURRENCY,
        "provider": "contract-pay",
        "provider_reference": w.unique("ref"),
    }
    return Call(body=body)


# --- changes -----------------------------------------------------------------------------


@case("PATCH", "/auth/users/{user_id}")
def _update_user(w: World) -> Call:
    return Call(path_parameters={"user_id": w.new_user()}, body={"full_name": "Renamed"})


@case("PUT", "/auth/users/{user_id}/roles")
def _set_roles(w: World) -> Call:
    return Call(path_parameters={"user_id": w.new_user()}, body={"roles": ["clerk", "customer"]})


@case("PATCH", "/catalog/categories/{category_id}")
def _update_category(w: World) -> Call:
    body = {"name": "Renamed", "parent_id": None}
    return Call(path_parameters={"category_id": w.new_category(parent_id=w.category_id)}, body=body)


@case("PATCH", "/catalog/products/{product_id}")
def _update_product(w: World) -> Call:
    body = {"name": "Renamed", "price": "21.00", "category_id": None}
    return Call(path_parameters={"product_id": w.new_product(stock=0)}, body=body)


@case("PUT", "/catalog/products/{product_id}/images/order")
def _reorder_images(w: World) -> Call:
    product_id = w.new_product(stock=0)
    first, second = w.new_image(product_id), w.new_image(product_id)
    return Call(path_parameters={"product_id": product_id}, body={"image_ids": [second, first]})


@case("PATCH", "/inventory/branches/{branch_id}")
def _update_branch(w: World) -> Call:
    body = {"name": "Renamed branch", "is_active": False}
    return Call(path_parameters={"branch_id": w.new_branch()}, body=body)


@case("PUT", "/inventory/branches/{branch_id}/staff/{user_id}")
def _assign_staff(w: World) -> Call:
    return Call(path_parameters={"branch_id": w.new_branch(), "user_id": w.new_user()})


@case("PATCH", "/sales/coupons/{coupon_id}")
def _update_coupon(w: World) -> Call:
    body = {"usage_limit": 100, "valid_until": "2999-01-01T00:00:00+00:00"}
    return Call(path_parameters={"coupon_id": w.new_coupon()}, body=body)


# --- state transitions -------------------------------------------------------------------


@case("POST", "/sales/orders/{order_id}/confirm")
def _confirm_order(w: World) -> Call:
    return Call(path_parameters={"order_id": w.new_order()["id"]})


@case("POST", "/sales/orders/{order_id}/cancel")
def _cancel_order(w: World) -> Call:
    return Call(path_parameters={"order_id": w.new_order()["id"]})


@case("POST", "/logistics/shipments/{shipment_id}/ship")
def _ship(w: World) -> Call:
    return Call(path_parameters={"shipment_id": w.new_shipment(status="pending")})


@case("POST", "/logistics/shipments/{shipment_id}/deliver")
def _deliver(w: World) -> Call:
    return Call(path_parameters={"shipment_id": w.new_shipment(status="shipped")})


@case("POST", "/logistics/shipments/{shipment_id}/cancel")
def _cancel_shipment(w: World) -> Call:
    return Call(path_parameters={"shipment_id": w.new_shipment(status="pending")})


# --- endings: logins, passwords, deletions -----------------------------------------------


@case("POST", "/auth/password")
def _change_password(w: World) -> Call:
    user_id = w.new_user()
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    return Call(body=body, headers=w.login_header(user_id))


@case("POST", "/auth/logout")
def _log_out(w: World) -> Call:
    return Call(headers=w.login_header())  # a login of its own: the seed's stays open


@case("DELETE", "/catalog/categories/{category_id}")
def _delete_category(w: World) -> Call:
    return Call(path_parameters={"category_id": w.new_category()})


@case("DELETE", "/catalog/products/{product_id}/images/{image_id}")
def _delete_image(w: World) -> Call:
    product_id = w.new_product(stock=0)
    image_id = w.new_image(product_id)
    return Call(path_parameters={"product_id": product_id, "image_id": image_id})


@case("DELETE", "/inventory/branches/{branch_id}/staff/{user_id}")
def _remove_staff(w: World) -> Call:
    branch_id, user_id = w.new_branch(), w.new_user()
    w.send("PUT", f"/inventory/branches/{branch_id}/staff/{user_id}")
    return Call(path_parameters={"branch_id": branch_id, "user_id": user_id})
