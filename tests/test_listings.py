"""Every collection of the composed API keeps one listing contract.

For each route serving a listing (found in the app, so a new one cannot be left out):

* the page is ``{"items": [...], "next_cursor": ...}``; for every allowed sort, ascending and
  descending, walking the pages three rows at a time gives exactly the rows of one large page,
  in the same order, each once; numbers and times come in the sort's order, ties by id;
* every filter keeps only the rows it names, and also when paging;
* an unknown parameter, a sort not allowed and a cursor not handed out (or handed out under
  another sort) are 422s.

On PostgreSQL, each allowed sort's page is read from an index on a table of 100,000 rows
(EXPLAIN of the very statements the listings run: no sort node, no sequential scan of the
listed table), for the first page and for a page after a cursor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session

from tecnorev.api import create_app
from tecnorev.catalog import service as catalog
from tecnorev.core.listing import Listing, listing_of
from tecnorev.core.registry import get_registry
from tecnorev.core.web import API_PREFIX, Route
from tecnorev.core.web.composition import module_routers
from tecnorev.inventory import service as inventory
from tecnorev.logistics import service as logistics
from tecnorev.payments import service as payments
from tecnorev.sales import service as sales
from tecnorev.sales.schemas import CouponCreate
from tecnorev.testing.auth import create_user, login_header
from tecnorev.testing.core import BACKENDS, fresh_database, migrate

Item = dict[str, Any]


def _routes() -> dict[str, Listing]:
    """Every listing route of the installed modules, by path."""
    return {
        route.path: found
        for _, router in module_routers(get_registry())
        for route in router.routes
        if isinstance(route, APIRoute) and (found := listing_of(route)) is not None
    }


# --- the world ----------------------------------------------------------------------------


class World:
    def __init__(self, client: TestClient, app) -> None:
        self.client = client
        self.app = app
        self.ids: dict[str, Any] = {}
        self.headers: dict[str, str] = {}
        self.customer_headers: dict[str, str] = {}

    def get(self, path: str, params: dict[str, Any], anonymous: bool = False):
        headers = {} if anonymous else self.headers
        return self.client.get(API_PREFIX + path, params=params, headers=headers)


@pytest.fixture(scope="module", params=BACKENDS)
def world(request, tmp_path_factory) -> Iterator[World]:
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        migrate(url)
        app = create_app(database_url=url)
        try:
            with TestClient(app) as client:
                w = World(client, app)
                _populate(w, app.state.engine)
                yield w
        finally:
            app.state.engine.dispose()


def _populate(w: World, engine: sa.Engine) -> None:
    """A few rows of every collection, with ties in every sort field."""
    with Session(engine) as session:
        admin = create_user(session, "admin@example.com", roles=["admin"])
        customers = [
            create_user(session, f"customer{i}@example.com", roles=["customer"]).id
            for i in range(3)
        ]
        w.headers = login_header(session, admin.id)
        w.customer_headers = login_header(session, customers[0])
        home = catalog.create_category(session, name="home", slug="home").id
        lamps = catalog.create_category(session, name="lamps", slug="lamps", parent_id=home).id
        catalog.create_category(session, name="home", slug="home-2")
        prices = ["5.00", "1.00", "5.00", "3.00", "5.00", "1.00", "9.99", "3.00"]
        names = ["beta", "alpha", "beta", "gamma", "alpha", "beta", "alpha", "delta"]
        products = [
            catalog.create_product(
                session,
                sku=f"SKU-{i}",
                name=name,
                price=Decimal(price),
                category_id=lamps if i % 2 else home,
                is_active=i != 7,
            ).id
            for i, (name, price) in enumerate(zip(names, prices, strict=True))
        ]
        branches = [
            inventory.create_branch(session, code=code, name=name, author_id=None).id
            for code, name in (("N", "north"), ("S", "south"), ("E", "north"))
        ]
        inventory.create_branch(session, code="X", name="closed", is_active=False, author_id=None)
        for b, branch in enumerate(branches):
            inventory.receive_stock(
                session,
                branch_id=branch,
                quantities={p: 10 + (i * (b + 1)) % 4 for i, p in enumerate(products[:7])},
                reference=f"R-{b}",
                author_id=None,
            )
        for code, active in (("SPRING", True), ("SUMMER", False), ("WINTER", True)):
            data = CouponCreate(code=code, kind="PERCENT", value="10", is_active=active)
            sales.create_coupon(session, data=data, actor_id=None)
        orders = []
        for i in range(7):
            placed = sales.place_order(
                session,
                customer_id=customers[i % 3],
                branch_id=branches[i % 2],
                items=[(products[i % 7], 1), (products[(i + 3) % 7], 1 + i % 2)],
            )
            orders.append(placed.order.id)
        sales.confirm_order(session, order_id=orders[0], actor_id=admin.id)
        sales.cancel_order(session, order_id=orders[1], actor_id=admin.id, as_customer=None)
        for i, order in enumerate(orders[2:5]):
            sales.confirm_order(session, order_id=order, actor_id=admin.id)
            logistics.create_shipment(
                session, order_id=order, carrier="dhl", tracking_number=f"T-{i}"
            )
        total = sales.get_order(session, order_id=orders[5])[0].total
        payments.record_payment(
            session,
            order_id=orders[5],
            amount=total,
            currency=None,
            provider="manual",
            provider_reference="P-1",
        )
        payments.record_payment(
            session,
            order_id=orders[6],
            amount=Decimal("1.00"),
            currency=None,
            provider="manual",
            provider_reference="P-2",
        )
        session.commit()
        w.ids = {
            "home": home,
            "lamps": lamps,
            "branch": branches[0],
            "product": products[1],
            "customer": customers[0],
            "order": orders[3],
        }


# --- what each listing is asked --------------------------------------------------------------

Check = Callable[[Item], bool]
NOW = datetime.now(UTC)


def _filters(w: World) -> dict[str, list[tuple[dict[str, Any], Check]]]:
    ids = w.ids
    in_home = {ids["home"], ids["lamps"]}
    recent = (NOW - timedelta(days=1)).isoformat()
    future = (NOW + timedelta(days=1)).isoformat()
    return {
        "/catalog/categories": [({"parent_id": ids["home"]}, lambda i: i["id"] == ids["lamps"])],
        "/catalog/products": [
            ({"category_id": ids["home"]}, lambda i: i["category_id"] in in_home),
            ({"category_id": ids["lamps"]}, lambda i: i["category_id"] == ids["lamps"]),
            ({"q": "ALP"}, lambda i: i["name"] == "alpha"),
            ({"q": "sku-"}, lambda i: i["sku"].startswith("SKU-")),
            ({"is_active": "false"}, lambda i: not i["is_active"]),
            ({"price_min": "3.00"}, lambda i: Decimal(i["price"]) >= 3),
            ({"price_max": "3"}, lambda i: Decimal(i["price"]) <= 3),
        ],
        "/inventory/branches": [({"is_active": "false"}, lambda i: not i["is_active"])],
        "/inventory/stock": [
            ({"branch_id": ids["branch"]}, lambda i: i["branch_id"] == ids["branch"]),
            ({"product_id": ids["product"]}, lambda i: i["product_id"] == ids["product"]),
            ({"quantity_max": 11}, lambda i: i["quantity"] <= 11),
        ],
        "/inventory/movements": [
            ({"branch_id": ids["branch"]}, lambda i: i["branch_id"] == ids["branch"]),
            ({"product_id": ids["product"]}, lambda i: i["product_id"] == ids["product"]),
            ({"reason": "SALE"}, lambda i: i["reason"] == "SALE"),
            ({"created_from": recent}, lambda i: True),
            ({"created_before": recent}, lambda i: False),
        ],
        "/sales/coupons": [({"is_active": "true"}, lambda i: i["is_active"])],
        "/sales/orders": [
            ({"status": "CONFIRMED"}, lambda i: i["status"] == "CONFIRMED"),
            ({"branch_id": ids["branch"]}, lambda i: i["branch_id"] == ids["branch"]),
            ({"customer_id": ids["customer"]}, lambda i: i["customer_id"] == ids["customer"]),
            ({"created_from": recent, "created_before": future}, lambda i: True),
            ({"created_from": future}, lambda i: False),
        ],
        "/logistics/shipments": [
            ({"order_id": ids["order"]}, lambda i: i["order_id"] == ids["order"]),
            ({"status": "PENDING"}, lambda i: i["status"] == "PENDING"),
        ],
        "/payments": [
            ({"status": "SUCCEEDED"}, lambda i: i["status"] == "SUCCEEDED"),
        ],
        "/auth/users": [({"is_active": "true"}, lambda i: i["is_active"])],
    }


def _walk(w: World, path: str, params: dict[str, Any], limit: int) -> list[Item]:
    items: list[Item] = []
    cursor = None
    for _ in range(200):
        response = w.get(path, {**params, "limit": limit, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, (path, params, response.text)
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert len(page["items"]) == limit  # no short page before the last
    raise AssertionError(f"{path} {params}: more than 200 pages")


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return Decimal(value) if value[:1].isdigit() and "T" not in value else value
        except ArithmeticError:
            return value
    return value


def test_every_collection_keeps_the_listing_contract(world: World):
    listings = _routes()
    filters = _filters(world)
    assert set(listings) == set(filters), "a listing without checks here, or checks for none"
    for path, listing in listings.items():
        everything = _walk(world, path, {}, 100)
        assert everything, f"{path}: the world has rows for every collection"
        key = listing.key
        for sort in listing.sort_values:
            field = sort.lstrip("-")
            one_page = _walk(world, path, {"sort": sort}, 100)
            assert sorted(i[key] for i in one_page) == sorted(i[key] for i in everything)
            paged = _walk(world, path, {"sort": sort}, 3)
            assert [i[key] for i in paged] == [i[key] for i in one_page], (path, sort)
            if all(not isinstance(i[field], str) or i[field][:1].isdigit() for i in one_page):
                order = [(_comparable(i[field]), i[key]) for i in one_page]
                expected = sorted(order, reverse=sort.startswith("-"))
                if field not in listing.unique:
                    assert order == expected, (path, sort)
        for params, check in filters[path]:
            kept = _walk(world, path, params, 2)
            assert all(check(i) for i in kept), (path, params, kept)
            assert {i[key] for i in kept} == {i[key] for i in everything if check(i)}, (
                path, params
            )  # fmt: skip
        _refusals(world, path, listing)


def test_every_collection_answers_as_fastapi_solving_its_route_would(world: World):
    """The listing routes solve their dependencies themselves (``core.web.routing``): the
    same answers as FastAPI's own solving, which any dependency override switches to."""
    listings = _routes()
    lean = {
        route.path: route
        for _, router in module_routers(get_registry())
        for route in router.routes
        if isinstance(route, Route) and route.lean
    }
    assert set(lean) == set(listings), "every listing is served without FastAPI's solving"

    def answers() -> list[tuple[str, int, Any]]:
        found = []
        for path, listing in listings.items():
            for params, headers in _asks(world, path, listing):
                response = world.client.get(API_PREFIX + path, params=params, headers=headers)
                found.append((path, response.status_code, response.json()))
        return found

    served = answers()
    world.app.dependency_overrides[_never_used] = _never_used
    try:
        solved = answers()
    finally:
        world.app.dependency_overrides.clear()
    assert served == solved
    statuses = {status for _, status, _ in served}
    assert statuses == {200, 401, 403, 422}, statuses


def _never_used() -> None:
    """A dependency no route has: overriding it sends requests through FastAPI's solving."""


def _asks(w: World, path: str, listing: Listing) -> list[tuple[dict[str, Any], dict[str, str]]]:
    admin = w.headers
    customer = w.customer_headers
    asks: list[tuple[dict[str, Any], dict[str, str]]] = [
        ({}, admin),
        ({}, {}),
        ({}, customer),
        ({}, {"Authorization": "Bearer not-a-token"}),
        ({"limit": 2, "sort": listing.sort_values[-1]}, admin),
        ({"limit": "1.0", "sort": "nonsense"}, admin),
        ({"unknown": "1"}, admin),
        ({"unknown": "1"}, {}),
        ({"cursor": "bm90IGEgY3Vyc29y"}, admin),
        ({"cursor": ""}, customer),
    ]
    for params, _ in _filters(w)[path]:
        asks.append((params, admin))
    first = w.get(path, {"limit": 1}).json()
    if first.get("next_cursor"):
        asks.append(({"limit": 1, "cursor": first["next_cursor"]}, admin))
    return asks


def _refusals(w: World, path: str, listing: Listing) -> None:
    def refused(params: dict[str, Any], code: str) -> None:
        response = w.get(path, params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["code"] == code, (path, params, response.text)

    refused({"unknown": "1"}, "validation_error")
    refused({"sort": "nonsense"}, "validation_error")
    refused({"limit": "0"}, "validation_error")
    refused({"limit": "1.0"}, "validation_error")
    refused({"cursor": "bm90IGEgY3Vyc29y"}, "invalid_cursor")
    if len(listing.sort_values) > 1:
        first = w.get(path, {"limit": 1, "sort": listing.sort_values[0]}).json()
        if first["next_cursor"] is not None:
            other = listing.sort_values[1]
            refused({"sort": other, "cursor": first["next_cursor"]}, "invalid_cursor")


# --- index use on PostgreSQL --------------------------------------------------------------------

ROWS = 100_000


@pytest.fixture(scope="module")
def big_database(tmp_path_factory) -> Iterator[sa.Engine]:
    if "postgresql" not in BACKENDS:
        pytest.skip("PostgreSQL is not available")
    with fresh_database("postgresql", tmp_path_factory.mktemp("explain")) as url:
        migrate(url)
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                _fill(conn)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
            yield engine
        finally:
            engine.dispose()


def _fill(conn: sa.Connection) -> None:
    """100,000 rows in every listed table (and the tables they refer to), by generate_series."""
    tables = get_registry().load_models().tables
    wanted = ["user", "category", "product", "branch", "stock_entry", "inventory_movement",
              "coupon", "order", "shipment", "payment"]  # fmt: skip
    for name in wanted:
        table = tables[name]
        columns, values = [], []
        fk_columns = [c for c in table.columns if c.foreign_keys and not c.nullable]
        for column in table.columns:
            if column.primary_key or (column.nullable and not column.foreign_keys):
                continue
            if column.foreign_keys and column.nullable:
                continue
            columns.append(f'"{column.name}"')
            values.append(_value(column, fk_columns))
        conn.execute(
            sa.text(
                f'INSERT INTO "{name}" ({", ".join(columns)}) '
                f"SELECT {', '.join(values)} FROM generate_series(1, {ROWS}) AS g"
            )
        )


def _value(column: sa.Column, fk_columns: list[sa.Column]) -> str:
    """An expression of ``g`` (1..ROWS) fitting the column and the table's constraints."""
    if column.foreign_keys:
        # pairs of references stay unique (stock_entry's (branch, product)): 316 x 317 > ROWS
        return "((g - 1) % 316 + 1)" if column is fk_columns[0] else "((g - 1) / 316 + 1)"
    kind = column.type
    if isinstance(kind, sa.Enum):
        values = ", ".join(f"'{v}'" for v in kind.enums)
        cast = f'::"{kind.name}"' if kind.native_enum and kind.name else ""
        return (
            f"(ARRAY[{values}]{cast}[])[g % {len(kind.enums)} + 1]"
            if cast
            else (f"(ARRAY[{values}])[g % {len(kind.enums)} + 1]")
        )
    if isinstance(kind, sa.Boolean):
        return "(g % 20 <> 0)"
    if isinstance(kind, sa.Numeric):
        if column.name in ("discount",):
            return "0"
        return "(((g * 7919) % 9999 + 1) / 100.0)"  # 0.01 to 99.99: a percent, a price
    if isinstance(kind, sa.Integer):
        return "((g * 7919) % 1000 + 1)"
    if "date" in type(kind).__name__.lower() or "time" in type(kind).__name__.lower():
        return "(now() - (g || ' seconds')::interval)"
    length = getattr(kind, "length", None)
    if length is not None and length < 12:
        return f"substr(md5(g::text), 1, {length})"
    return f"'{column.name}-' || g"


def _plan(conn: sa.Connection, listing: Listing, sort: str, after: bool) -> dict[str, Any]:
    shape = (sort.lstrip("-"), sort.startswith("-"), (), after, ())
    statement = listing._cached(shape).statement
    compiled = statement.compile(dialect=conn.dialect)
    params = {"_limit": 51}
    if after:
        row = conn.execute(
            sa.select(listing.columns[sort.lstrip("-")], listing.columns[listing.key]).limit(1)
        ).one()
        params["_after"], params["_after_key"] = row[0], row[1]
    sql = "EXPLAIN (FORMAT JSON) " + compiled.string
    found = conn.exec_driver_sql(sql, dict(compiled.construct_params(params))).scalar_one()
    return (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The plan's nodes, less the subplans of per-row subqueries (a product's first image):
    what reads and orders the listed rows."""
    yield plan
    for child in plan.get("Plans", ()):
        if child.get("Parent Relationship") not in ("SubPlan", "InitPlan"):
            yield from _nodes(child)


@pytest.mark.postgres
def test_every_allowed_sort_reads_its_page_from_an_index(big_database):
    with big_database.connect() as conn:
        for path, listing in _routes().items():
            table = next(iter(listing.columns[listing.key].base_columns)).table.name
            for sort in listing.sort_values:
                for after in (False, True):
                    plan = _plan(conn, listing, sort, after)
                    kinds = [(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan)]
                    assert ("Seq Scan", table) not in kinds, (path, sort, after, kinds)
                    assert not any(k in ("Sort", "Incremental Sort") for k, _ in kinds), (
                        path, sort, after, kinds
                    )  # fmt: skip
                    assert any(k.startswith("Index") and r == table for k, r in kinds), (
                        path, sort, after, kinds
                    )  # fmt: skip
