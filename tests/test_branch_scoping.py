"""Branch scoping, walked whole through the composed app: for every seeded role, every action
on a branch-scoped resource (orders, shipments, payments, stock, movements), on a target at
the clerk's own branch and on one at another branch.

The rule: a permission held by branch staff acts only on their branches' resources; reaching
every branch is an explicit ``<resource>:read_all`` code (admin and manager hold them).  A
customer reads their own orders (and what hangs off them) at any branch.  Another branch's
order, shipment or payment answers as a missing one would (404); branches are public, so
another branch's stock is left out of lists and changing it is a 403.  Every refused request
leaves the database as it was, and stock always equals the sum of its movements.

Each case makes its own targets (through the services, unrestricted) on one database per
backend, so the cases are independent and the matrix runs in seconds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from tecnorev.api import create_app
from tecnorev.catalog.models import Product
from tecnorev.core.registry import get_registry
from tecnorev.core.web import API_PREFIX
from tecnorev.core.web.composition import module_routers
from tecnorev.inventory import service as inventory
from tecnorev.logistics import service as logistics
from tecnorev.payments import service as payments
from tecnorev.sales import service as sales
from tecnorev.testing.auth import create_user, login_header
from tecnorev.testing.core import BACKENDS, fresh_database, migrate
from tecnorev.testing.inventory import assert_ledger_matches

ROLES = ("admin", "manager", "clerk", "customer", "other customer")
OWN, OTHER = "own branch", "other branch"

# The routes whose resources belong to a branch (coupons and branches themselves do not).
SCOPED_PATHS = re.compile(
    rf"^{API_PREFIX}/(sales/orders|logistics/|payments(?:/|$)|"
    r"inventory/(stock|movements|receipts|adjustments|transfers))"
)


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int
    code: str = ""  # the error code of a refusal
    listed: bool | None = None  # for a list: whether the target is in it


OK = Outcome(200)
CREATED = Outcome(201)
SEES = Outcome(200, listed=True)
HIDDEN = Outcome(200, listed=False)  # a list that leaves the target out
DENIED = Outcome(403, "permission_denied")  # the role lacks the permission, wherever
NOT_STAFF = Outcome(403, "not_branch_staff")  # a public branch, not the caller's


def missing(code: str) -> Outcome:
    return Outcome(404, code)


# --- the world --------------------------------------------------------------------------------


@dataclass
class World:
    """One migrated database behind the composed app: branches CENTRO (the clerk's) and NORTE,
    a stocked product, and a user per role; ``customer`` places every target order."""

    client: TestClient
    engine: sa.Engine
    branches: dict[str, int]
    product_id: int
    users: dict[str, int]
    headers: dict[str, dict[str, str]]
    numbers: Iterator[int]

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self.numbers)}"

    def order(self, branch_id: int, *, confirmed: bool = False) -> int:
        with Session(self.engine) as session:
            placed = sales.place_order(
                session,
                customer_id=self.users["customer"],
                branch_id=branch_id,
                items=[(self.product_id, 1)],
            )
            if confirmed:
                sales.confirm_order(session, order_id=placed.order.id)
            session.commit()
            return placed.order.id

    def shipment(self, branch_id: int, *, shipped: bool = False) -> tuple[int, int]:
        """A shipment of a new confirmed order at the branch: (order id, shipment id)."""
        order_id = self.order(branch_id, confirmed=True)
        with Session(self.engine) as session:
            shipment = logistics.create_shipment(
                session, order_id=order_id, carrier="DHL", tracking_number=self.unique("TRK")
            )
            if shipped:
                logistics.ship_shipment(session, shipment_id=shipment.id)
            session.commit()
            return order_id, shipment.id

    def payment(self, branch_id: int) -> int:
        order_id = self.order(branch_id)
        with Session(self.engine) as session:
            payment = payments.record_payment(
                session,
                order_id=order_id,
                amount=Decimal("1.00"),
                currency="USD",
                provider="card",
                provider_reference=self.unique("ch"),
            )
            session.commit()
            return payment.id

    def listed_ids(self, path: str, who: str, **params) -> list[int]:
        """Every id a paginated list shows ``who``, page after page."""
        ids, cursor = [], None
        while True:
            query = {**params, "limit": 100} | ({"cursor": cursor} if cursor else {})
            response = self.client.get(path, params=query, headers=self.headers[who])
            assert response.status_code == 200, response.text
            ids += [item["id"] for item in response.json()["items"]]
            cursor = response.json()["next_cursor"]
            if cursor is None:
                return ids

    def state(self) -> dict[str, list[tuple]]:
        """What a refused request must leave as it was."""
        queries = {
            "orders": 'SELECT id, status FROM "order" ORDER BY id',
            "shipments": "SELECT id, status, shipped_at, delivered_at FROM shipment ORDER BY id",
            "payments": "SELECT id, status, amount FROM payment ORDER BY id",
            "stock": "SELECT branch_id, product_id, quantity FROM stock_entry ORDER BY 1, 2",
            "movements": "SELECT id FROM inventory_movement ORDER BY id",
        }
        with self.engine.connect() as conn:
            return {
                name: [tuple(r) for r in conn.execute(sa.text(q))] for name, q in queries.items()
            }


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        migrate(url)
        app = create_app(database_url=url)
        try:
            with TestClient(app) as client:
                yield _populate(client, app.state.engine)
        finally:
            app.state.engine.dispose()


def _populate(client: TestClient, engine: sa.Engine) -> World:
    with Session(engine) as session:
        branches = {
            code: inventory.create_branch(session, code=code, name=code.title(), author_id=None).id
            for code in ("CENTRO", "NORTE")
        }
        product = Product(sku="LAMP", name="Lamp", price=Decimal("19.90"))
        session.add(product)
        session.flush()
        for branch_id in branches.values():
            inventory.receive_stock(
                session,
                branch_id=branch_id,
                quantities={product.id: 100_000},
                reference="opening stock",
                author_id=None,
            )
        users, headers = {}, {}
        for role in ROLES:
            seeded = role.split()[-1]  # "other customer" is a customer too
            email = role.replace(" ", ".") + "@example.com"
            users[role] = create_user(session, email, roles=[seeded]).id
            headers[role] = login_header(session, users[role])
        inventory.assign_staff(session, branch_id=branches["CENTRO"], user_id=users["clerk"])
        session.commit()
        product_id = product.id
    return World(client, engine, branches, product_id, users, headers, itertools.count(1))


# --- the actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    url: str
    body: dict | None = None
    # for a list: whether the target is among what it shows ``who``
    listed: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Action:
    method: str
    path: str  # as the route table has it
    prepare: Callable[[World, int, int], Call]  # (world, target branch, the other branch)
    # per role: one outcome wherever the target is, or (at the clerk's branch, at another)
    expected: dict[str, Outcome | tuple[Outcome, Outcome]]

    def outcome(self, role: str, where: str) -> Outcome:
        expected = self.expected[role]
        if isinstance(expected, Outcome):
            return expected
        return expected[0] if where == OWN else expected[1]


def _roles(admin, manager, clerk, customer, other) -> dict:
    return dict(zip(ROLES, (admin, manager, clerk, customer, other), strict=True))


def _list_orders(w: World, branch: int, _other: int) -> Call:
    target = w.order(branch)
    return Call(ORDERS, listed=lambda who: target in w.listed_ids(ORDERS, who))


def _list_shipments(w: World, branch: int, _other: int) -> Call:
    _, target = w.shipment(branch)
    return Call(SHIPMENTS, listed=lambda who: target in w.listed_ids(SHIPMENTS, who))


def _list_payments(w: World, branch: int, _other: int) -> Call:
    target = w.payment(branch)
    return Call(PAYMENTS, listed=lambda who: target in w.listed_ids(PAYMENTS, who))


def _list_stock(w: World, branch: int, _other: int) -> Call:
    def listed(who: str) -> bool:
        params = {"product_id": w.product_id}  # one row per branch, every branch unfiltered
        response = w.client.get(STOCK, params=params, headers=w.headers[who])
        assert response.status_code == 200, response.text
        return branch in {row["branch_id"] for row in response.json()["items"]}

    return Call(STOCK, listed=listed)


def _list_movements(w: World, branch: int, _other: int) -> Call:
    def listed(who: str) -> bool:
        params = {"branch_id": branch, "limit": 1}  # asking for that branch's, by name
        response = w.client.get(MOVEMENTS, params=params, headers=w.headers[who])
        assert response.status_code == 200, response.text
        return bool(response.json()["items"])

    return Call(MOVEMENTS, listed=listed)


ORDERS = f"{API_PREFIX}/sales/orders"
SHIPMENTS = f"{API_PREFIX}/logistics/shipments"
PAYMENTS = f"{API_PREFIX}/payments"
STOCK = f"{API_PREFIX}/inventory/stock"
MOVEMENTS = f"{API_PREFIX}/inventory/movements"

no_order = missing("order_not_found")
no_shipment = missing("shipment_not_found")
no_payment = missing("payment_not_found")

ACTIONS: dict[str, Action] = {
    # -- orders: staff reach their branches' (orders:read_all every branch's); a customer
    #    reads and cancels (while PENDING) their own wherever; placing is anyone's, anywhere
    "orders: place": Action(
        "POST",
        "/sales/orders",
        lambda w, b, _: Call(
            ORDERS,
            {"branch_id": b, "items": [{"product_id": w.product_id, "quantity": 1}]},
        ),
        _roles(CREATED, CREATED, CREATED, CREATED, CREATED),
    ),
    "orders: list": Action(
        "GET",
        "/sales/orders",
        _list_orders,
        _roles(SEES, SEES, (SEES, HIDDEN), SEES, HIDDEN),
    ),
    "orders: read": Action(
        "GET",
        "/sales/orders/{order_id}",
        lambda w, b, _: Call(f"{ORDERS}/{w.order(b)}"),
        _roles(OK, OK, (OK, no_order), OK, no_order),
    ),
    "orders: confirm": Action(
        "POST",
        "/sales/orders/{order_id}/confirm",
        lambda w, b, _: Call(f"{ORDERS}/{w.order(b)}/confirm"),
        _roles(OK, OK, (OK, no_order), DENIED, DENIED),
    ),
    "orders: cancel": Action(
        "POST",
        "/sales/orders/{order_id}/cancel",
        lambda w, b, _: Call(f"{ORDERS}/{w.order(b)}/cancel"),
        _roles(OK, OK, (OK, no_order), OK, no_order),
    ),
    # -- shipments: read as their order is; changed with shipments:manage at the staff's
    #    branches (shipments:read_all every branch's)
    "shipments: list": Action(
        "GET",
        "/logistics/shipments",
        _list_shipments,
        _roles(SEES, SEES, (SEES, HIDDEN), SEES, HIDDEN),
    ),
    "shipments: read": Action(
        "GET",
        "/logistics/shipments/{shipment_id}",
        lambda w, b, _: Call(f"{SHIPMENTS}/{w.shipment(b)[1]}"),
        _roles(OK, OK, (OK, no_shipment), OK, no_shipment),
    ),
    "shipments: create": Action(
        "POST",
        "/logistics/shipments",
        lambda w, b, _: Call(
            SHIPMENTS,
            {
                "order_id": w.order(b, confirmed=True),
                "carrier": "UPS",
                "tracking_number": w.unique("TRK"),
            },
        ),
        _roles(CREATED, CREATED, (CREATED, no_order), DENIED, DENIED),
    ),
    "shipments: ship": Action(
        "POST",
        "/logistics/shipments/{shipment_id}/ship",
        lambda w, b, _: Call(f"{SHIPMENTS}/{w.shipment(b)[1]}/ship"),
        _roles(OK, OK, (OK, no_shipment), DENIED, DENIED),
    ),
    "shipments: deliver": Action(
        "POST",
        "/logistics/shipments/{shipment_id}/deliver",
        lambda w, b, _: Call(f"{SHIPMENTS}/{w.shipment(b, shipped=True)[1]}/deliver"),
        _roles(OK, OK, (OK, no_shipment), DENIED, DENIED),
    ),
    "shipments: cancel": Action(
        "POST",
        "/logistics/shipments/{shipment_id}/cancel",
        lambda w, b, _: Call(f"{SHIPMENTS}/{w.shipment(b)[1]}/cancel"),
        _roles(OK, OK, (OK, no_shipment), DENIED, DENIED),
    ),
    # -- payments: read as their order is; recorded with payments:manage at the staff's
    #    branches (payments:read_all every branch's); the clerk records none
    "payments: list": Action(
        "GET",
        "/payments",
        _list_payments,
        _roles(SEES, SEES, (SEES, HIDDEN), SEES, HIDDEN),
    ),
    "payments: read": Action(
        "GET",
        "/payments/{payment_id}",
        lambda w, b, _: Call(f"{PAYMENTS}/{w.payment(b)}"),
        _roles(OK, OK, (OK, no_payment), OK, no_payment),
    ),
    "payments: record": Action(
        "POST",
        "/payments",
        lambda w, b, _: Call(
            PAYMENTS,
            {
                "order_id": w.order(b),
                "amount": "1.00",
                "currency": "USD",
                "provider": "card",
                "provider_reference": w.unique("ch"),
            },
        ),
        _roles(CREATED, CREATED, DENIED, DENIED, DENIED),
    ),
    # -- stock and movements: inventory codes act at the staff's branches
    #    (inventory:read_all every branch); a transfer at its source
    "stock: list": Action(
        "GET",
        "/inventory/stock",
        _list_stock,
        _roles(SEES, SEES, (SEES, HIDDEN), DENIED, DENIED),
    ),
    "movements: list": Action(
        "GET",
        "/inventory/movements",
        _list_movements,
        _roles(SEES, SEES, (SEES, HIDDEN), DENIED, DENIED),
    ),
    "stock: receive": Action(
        "POST",
        "/inventory/receipts",
        lambda w, b, _: Call(
            f"{API_PREFIX}/inventory/receipts",
            {
                "branch_id": b,
                "lines": [{"product_id": w.product_id, "quantity": 5}],
                "reference": "DN",
            },
        ),
        _roles(CREATED, CREATED, (CREATED, NOT_STAFF), DENIED, DENIED),
    ),
    "stock: write off": Action(
        "POST",
        "/inventory/adjustments",
        lambda w, b, _: Call(
            f"{API_PREFIX}/inventory/adjustments",
            {"branch_id": b, "product_id": w.product_id, "quantity_delta": -5, "reason": "lost"},
        ),
        _roles(CREATED, CREATED, (CREATED, NOT_STAFF), DENIED, DENIED),
    ),
    "stock: transfer out": Action(
        "POST",
        "/inventory/transfers",
        lambda w, b, other: Call(
            f"{API_PREFIX}/inventory/transfers",
            {
                "from_branch_id": b,
                "to_branch_id": other,
                "lines": [{"product_id": w.product_id, "quantity": 2}],
                "reference": "TR",
            },
        ),
        _roles(CREATED, CREATED, DENIED, DENIED, DENIED),
    ),
}


# --- the tests --------------------------------------------------------------------------------


def test_the_matrix_covers_every_branch_scoped_route():
    routes = {
        (method, API_PREFIX + route.path)
        for _, router in module_routers(get_registry())
        for route in router.routes
        if isinstance(route, APIRoute)
        and route.include_in_schema  # not the redirects of former paths
        and SCOPED_PATHS.match(API_PREFIX + route.path)
        for method in route.methods
    }
    covered = {(a.method, API_PREFIX + a.path) for a in ACTIONS.values()}
    assert routes == covered


@pytest.mark.parametrize("where", [OWN, OTHER])
@pytest.mark.parametrize("action", list(ACTIONS))
@pytest.mark.parametrize("role", ROLES)
def test_branch_scoping(world: World, role: str, action: str, where: str):
    spec = ACTIONS[action]
    centro, norte = world.branches["CENTRO"], world.branches["NORTE"]
    branch, other = (centro, norte) if where == OWN else (norte, centro)
    call = spec.prepare(world, branch, other)
    expected = spec.outcome(role, where)
    before = world.state()

    if call.listed is not None and expected.listed is not None:
        assert call.listed(role) is expected.listed, (role, action, where)
    else:
        response = world.client.request(
            spec.method, call.url, json=call.body, headers=world.headers[role]
        )
        assert response.status_code == expected.status, (role, action, where, response.text)
        if expected.code:
            assert response.json()["error"]["code"] == expected.code, response.text

    after = world.state()
    changes = spec.method != "GET" and expected.status < 300
    assert (after != before) is changes, "a refused request or a read changed the database"
    assert_ledger_matches(world.engine)
