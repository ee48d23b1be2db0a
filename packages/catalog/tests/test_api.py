"""The catalog endpoints on both backends: every rule, every refusal (status, code, and that
nothing was stored), the listing's pagination, filters and statement count."""

from __future__ import annotations

import base64
import threading
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.catalog import service
from tecnorev.catalog.errors import CategoryCycle
from tecnorev.catalog.models import Category, Product, ProductImage
from tecnorev.catalog.permissions import CATALOG_MANAGE
from tecnorev.catalog.routes import router
from tecnorev.core.db import create_db_engine
from tecnorev.core.web import API_PREFIX
from tecnorev.testing.auth import all_permissions_but, user_header
from tecnorev.testing.core import api_client, migrate

API = f"{API_PREFIX}/catalog"


@pytest.fixture
def api(database_url):
    with api_client(database_url) as client:
        engine = client.app.state.engine
        yield SimpleNamespace(
            client=client,
            engine=engine,
            manager=user_header(engine, "manager@example.com", permissions=[CATALOG_MANAGE]),
            customer=user_header(engine, "customer@example.com", roles=["customer"]),
        )


def count(api, model) -> int:
    with Session(api.engine) as session:
        return session.execute(sa.select(sa.func.count()).select_from(model)).scalar_one()


def error_code(response) -> str:
    return response.json()["error"]["code"]


def new_category(api, slug, parent_id=None, name=None) -> int:
    body = {"name": name or slug.title(), "slug": slug, "parent_id": parent_id}
    response = api.client.post(f"{API}/categories", json=body, headers=api.manager)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def new_product(api, sku, *, name=None, price="10.00", category_id=None, is_active=True) -> int:
    body = {
        "sku": sku,
        "name": name or f"Product {sku}",
        "price": price,
        "category_id": category_id,
        "is_active": is_active,
    }
    response = api.client.post(f"{API}/products", json=body, headers=api.manager)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def seed_products(api, n, *, category_id=None, active=lambda i: True, image=False) -> list[int]:
    """``n`` products written directly (faster than n requests), ids ascending."""
    with Session(api.engine) as session:
        products = [
            Product(
                sku=f"SEED-{i:04d}",
                name=f"Seeded {i}",
                price=Decimal("1.00"),
                category_id=category_id,
                is_active=active(i),
            )
            for i in range(n)
        ]
        session.add_all(products)
        session.flush()
        if image:
            session.add_all(
                ProductImage(product_id=p.id, url=f"https://img.example/{p.id}/{k}", position=k)
                for p in products
                for k in range(2)
            )
        session.commit()
        return [p.id for p in products]


def walk(api, params, headers=None, path="/products") -> list[dict]:
    """Every item of a listing, following next_cursor to the end."""
    items, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = api.client.get(API + path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- categories --------------------------------------------------------------------------


def test_categories_are_created_listed_read_and_changed(api):
    home = new_category(api, "home")
    lamps = new_category(api, "lamps", parent_id=home)
    listed = api.client.get(f"{API}/categories").json()["items"]  # public, by name
    assert listed == [
        {"id": home, "name": "Home", "slug": "home", "parent_id": None},
        {"id": lamps, "name": "Lamps", "slug": "lamps", "parent_id": home},
    ]
    assert api.client.get(f"{API}/categories/{lamps}").json()["parent_id"] == home

    response = api.client.patch(
        f"{API}/categories/{lamps}", json={"name": "Desk lamps"}, headers=api.manager
    )
    assert response.status_code == 200
    assert response.json() == {
        "id": lamps,
        "name": "Desk lamps",
        "slug": "lamps",
        "parent_id": home,
    }
    response = api.client.patch(
        f"{API}/categories/{lamps}", json={"parent_id": None}, headers=api.manager
    )
    assert response.json()["parent_id"] is None

    missing = api.client.get(f"{API}/categories/999")
    assert (missing.status_code, error_code(missing)) == (404, "category_not_found")


def test_slugs_are_unique_and_well_formed(api):
    home = new_category(api, "home")
    garden = new_category(api, "garden")

    taken = api.client.post(
        f"{API}/categories", json={"name": "Home 2", "slug": "home"}, headers=api.manager
    )
    assert (taken.status_code, error_code(taken)) == (409, "slug_taken")
    renamed = api.client.patch(
        f"{API}/categories/{garden}", json={"slug": "home"}, headers=api.manager
    )
    assert (renamed.status_code, error_code(renamed)) == (409, "slug_taken")
    assert api.client.get(f"{API}/categories/{garden}").json()["slug"] == "garden"

    for bad in ["Home", "a--b", "-a", "a-", "a b", "", "ü", "a" * 141, "a\x00b"]:
        response = api.client.post(
            f"{API}/categories", json={"name": "X", "slug": bad}, headers=api.manager
        )
        assert (response.status_code, error_code(response)) == (422, "validation_error"), bad
    assert count(api, Category) == 2

    unknown_parent = api.client.post(
        f"{API}/categories", json={"name": "X", "slug": "x", "parent_id": 999}, headers=api.manager
    )
    assert (unknown_parent.status_code, error_code(unknown_parent)) == (422, "unknown_category")
    null_name = api.client.patch(
        f"{API}/categories/{home}", json={"name": None}, headers=api.manager
    )
    assert (null_name.status_code, error_code(null_name)) == (422, "validation_error")
    assert count(api, Category) == 2


def test_a_category_cannot_move_under_itself_or_its_descendants(api):
    a = new_category(api, "a")
    b = new_category(api, "b", parent_id=a)
    c = new_category(api, "c", parent_id=b)
    other = new_category(api, "other")

    for parent in (a, b, c):
        response = api.client.patch(
            f"{API}/categories/{a}", json={"parent_id": parent}, headers=api.manager
        )
        assert (response.status_code, error_code(response)) == (422, "category_cycle"), parent
    assert api.client.get(f"{API}/categories/{a}").json()["parent_id"] is None

    unknown = api.client.patch(
        f"{API}/categories/{a}", json={"parent_id": 999}, headers=api.manager
    )
    assert (unknown.status_code, error_code(unknown)) == (422, "unknown_category")

    moved = api.client.patch(
        f"{API}/categories/{b}", json={"parent_id": other}, headers=api.manager
    )
    assert moved.status_code == 200
    # a's subtree no longer holds b and c: a may now go under c
    again = api.client.patch(f"{API}/categories/{a}", json={"parent_id": c}, headers=api.manager)
    assert again.status_code == 200


def test_a_category_in_use_cannot_be_deleted(api):
    home = new_category(api, "home")
    lamps = new_category(api, "lamps", parent_id=home)
    new_product(api, "LAMP-1", category_id=lamps, is_active=False)

    with_children = api.client.delete(f"{API}/categories/{home}", headers=api.manager)
    assert (with_children.status_code, error_code(with_children)) == (409, "category_in_use")
    assert with_children.json()["error"]["details"] == {"children": True, "products": False}
    with_products = api.client.delete(f"{API}/categories/{lamps}", headers=api.manager)
    assert (with_products.status_code, error_code(with_products)) == (409, "category_in_use")
    assert with_products.json()["error"]["details"] == {"children": False, "products": True}
    assert count(api, Category) == 2

    leaf = new_category(api, "leaf", parent_id=home)
    assert api.client.delete(f"{API}/categories/{leaf}", headers=api.manager).status_code == 204
    assert api.client.get(f"{API}/categories/{leaf}").status_code == 404
    missing = api.client.delete(f"{API}/categories/{leaf}", headers=api.manager)
    assert (missing.status_code, error_code(missing)) == (404, "category_not_found")


# --- products ----------------------------------------------------------------------------


def test_products_are_created_read_and_changed(api):
    home = new_category(api, "home")
    response = api.client.post(
        f"{API}/products",
        json={"sku": "MUG-1", "name": "Mug", "price": "12.5", "category_id": home},
        headers=api.manager,
    )
    assert response.status_code == 201
    created = response.json()
    assert created["price"] == "12.50"
    assert (created["is_active"], created["description"], created["images"]) == (True, "", [])
    product = created["id"]
    assert api.client.get(f"{API}/products/{product}").json() == created

    response = api.client.patch(
        f"{API}/products/{product}", json={"price": "0.10"}, headers=api.manager
    )
    assert response.status_code == 200
    changed = response.json()
    assert (changed["price"], changed["name"], changed["category_id"]) == ("0.10", "Mug", home)
    response = api.client.patch(
        f"{API}/products/{product}",
        json={"name": "Big mug", "description": "Holds a lot", "category_id": None},
        headers=api.manager,
    )
    assert response.json()["name"] == "Big mug"
    assert response.json()["category_id"] is None
    assert response.json()["price"] == "0.10"
    with Session(api.engine) as session:
        assert session.get(Product, product).price == Decimal("0.10")


def test_product_refusals_store_nothing(api):
    product = new_product(api, "MUG-1", price="5.00")
    base = {"sku": "NEW-1", "name": "New", "price": "1.00"}
    cases = [
        ({**base, "sku": "MUG-1"}, 409, "sku_taken"),
        ({**base, "category_id": 999}, 422, "unknown_category"),
        ({**base, "price": "-0.01"}, 422, "validation_error"),
        ({**base, "price": "1.001"}, 422, "validation_error"),
        ({**base, "price": 1e20}, 422, "validation_error"),
        ({**base, "price": "NaN"}, 422, "validation_error"),
        ({**base, "name": "Mu\x00g"}, 422, "validation_error"),
        ({**base, "name": ""}, 422, "validation_error"),
        ({**base, "sku": "HAS SPACE"}, 422, "validation_error"),
        ({**base, "category_id": 2**31}, 422, "validation_error"),
        ({**base, "colour": "red"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = api.client.post(f"{API}/products", json=body, headers=api.manager)
        assert (response.status_code, error_code(response)) == (status, code), body
    assert count(api, Product) == 1

    for body, status, code in [
        ({"category_id": 999}, 422, "unknown_category"),
        ({"sku": "OTHER"}, 422, "validation_error"),  # the SKU is fixed
        ({"name": None}, 422, "validation_error"),
        ({"price": None}, 422, "validation_error"),
        ({"price": "1e20"}, 422, "validation_error"),
    ]:
        response = api.client.patch(f"{API}/products/{product}", json=body, headers=api.manager)
        assert (response.status_code, error_code(response)) == (status, code), body
    with Session(api.engine) as session:
        stored = session.get(Product, product)
        assert (stored.sku, stored.price, stored.category_id) == ("MUG-1", Decimal("5.00"), None)

    missing = api.client.patch(f"{API}/products/999", json={"price": "1"}, headers=api.manager)
    assert (missing.status_code, error_code(missing)) == (404, "product_not_found")


def test_inactive_products_are_seen_only_by_catalog_managers(api):
    live = new_product(api, "LIVE")
    retired = new_product(api, "OLD")
    response = api.client.patch(
        f"{API}/products/{retired}", json={"is_active": False}, headers=api.manager
    )
    assert (response.status_code, response.json()["is_active"]) == (200, False)

    for headers in (None, api.customer):
        for path in (f"/products/{retired}", f"/products/{retired}/images"):
            hidden = api.client.get(API + path, headers=headers)
            assert (hidden.status_code, error_code(hidden)) == (404, "product_not_found")
        assert [p["id"] for p in walk(api, {}, headers)] == [live]
    assert api.client.get(f"{API}/products/{retired}", headers=api.manager).status_code == 200
    # a manager sees the whole catalogue, and filters it as anyone else can
    listed = walk(api, {}, api.manager)
    assert [(p["id"], p["is_active"]) for p in listed] == [(live, True), (retired, False)]
    assert [p["id"] for p in walk(api, {"is_active": "true"}, api.manager)] == [live]
    assert [p["id"] for p in walk(api, {"is_active": "false"}, api.manager)] == [retired]
    assert [p["id"] for p in walk(api, {"is_active": "true"})] == [live]

    anonymous = api.client.get(f"{API}/products", params={"is_active": "false"})
    assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated")
    customer = api.client.get(
        f"{API}/products", params={"is_active": "false"}, headers=api.customer
    )
    assert (customer.status_code, error_code(customer)) == (403, "permission_denied")
    bad_token = api.client.get(f"{API}/products", headers={"Authorization": "Bearer nonsense"})
    assert (bad_token.status_code, error_code(bad_token)) == (401, "not_authenticated")


# --- images ------------------------------------------------------------------------------


def images(api, product) -> list[tuple[int, int]]:
    response = api.client.get(f"{API}/products/{product}/images")
    assert response.status_code == 200
    return [(image["id"], image["position"]) for image in response.json()]


def add_image(api, product, url, position=None) -> int:
    body = {
        "url": url,
        "alt_text": "a photo",
        **({} if position is None else {"position": position}),
    }
    response = api.client.post(f"{API}/products/{product}/images", json=body, headers=api.manager)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_product_reads_back_byte_for_byte_as_its_last_change_answered(api):
    product = new_product(api, "LAMP", price="7.5")
    add_image(api, product, "https://img.example/b.jpg")
    add_image(api, product, "https://img.example/a.jpg", position=0)
    changed = api.client.patch(
        f"{API}/products/{product}", json={"description": "Warm light ☀"}, headers=api.manager
    )
    assert changed.status_code == 200
    for headers in ({}, api.manager):
        read = api.client.get(f"{API}/products/{product}", headers=headers)
        # the same fields, order, money, times and images as the write's answer
        assert (read.status_code, read.content) == (200, changed.content)
    retired = api.client.patch(
        f"{API}/products/{product}", json={"is_active": False}, headers=api.manager
    )
    anonymous = api.client.get(f"{API}/products/{product}")
    assert (anonymous.status_code, error_code(anonymous)) == (404, "product_not_found")
    manager = api.client.get(f"{API}/products/{product}", headers=api.manager)
    assert (manager.status_code, manager.content) == (200, retired.content)
    missing = api.client.get(f"{API}/products/{product + 1000}", headers=api.manager)
    assert (missing.status_code, error_code(missing)) == (404, "product_not_found")


def test_images_are_kept_in_order(api):
    product = new_product(api, "LAMP")
    a = add_image(api, product, "https://img.example/a.jpg")
    b = add_image(api, product, "https://img.example/b.jpg")
    c = add_image(api, product, "https://img.example/c.jpg", position=99)  # past the end: last
    assert images(api, product) == [(a, 0), (b, 1), (c, 2)]
    first = add_image(api, product, "https://img.example/first.jpg", position=0)
    assert images(api, product) == [(first, 0), (a, 1), (b, 2), (c, 3)]
    middle = add_image(api, product, "https://img.example/mid.jpg", position=2)
    assert images(api, product) == [(first, 0), (a, 1), (middle, 2), (b, 3), (c, 4)]

    order = [c, b, middle, a, first]
    response = api.client.put(
        f"{API}/products/{product}/images/order", json={"image_ids": order}, headers=api.manager
    )
    assert response.status_code == 200
    assert [(i["id"], i["position"]) for i in response.json()] == [
        (image, n) for n, image in enumerate(order)
    ]
    listed = api.client.get(f"{API}/products", params={"q": "LAMP"}).json()["items"]
    assert listed[0]["image_url"] == "https://img.example/c.jpg"

    deleted = api.client.delete(f"{API}/products/{product}/images/{middle}", headers=api.manager)
    assert deleted.status_code == 204
    assert images(api, product) == [(c, 0), (b, 1), (a, 2), (first, 3)]
    assert api.client.get(f"{API}/products/{product}").json()["images"][0]["id"] == c


def test_image_refusals_store_nothing(api):
    product = new_product(api, "LAMP")
    other = new_product(api, "MUG")
    a = add_image(api, product, "https://img.example/a.jpg")
    b = add_image(api, product, "https://img.example/b.jpg")
    elsewhere = add_image(api, other, "https://img.example/mug.jpg")

    for ids, details in [
        ([b], {"missing": [a], "unknown": [], "duplicated": []}),
        ([b, a, elsewhere], {"missing": [], "unknown": [elsewhere], "duplicated": []}),
        ([b, a, a], {"missing": [], "unknown": [], "duplicated": [a]}),
        ([], {"missing": [a, b], "unknown": [], "duplicated": []}),
    ]:
        response = api.client.put(
            f"{API}/products/{product}/images/order", json={"image_ids": ids}, headers=api.manager
        )
        assert (response.status_code, error_code(response)) == (422, "image_order_mismatch")
        assert response.json()["error"]["details"] == details
    assert images(api, product) == [(a, 0), (b, 1)]

    wrong_product = api.client.delete(
        f"{API}/products/{product}/images/{elsewhere}", headers=api.manager
    )
    assert (wrong_product.status_code, error_code(wrong_product)) == (404, "image_not_found")
    for url in ["javascript:alert(1)", "ftp://img.example/a", "https://img.example/a b", ""]:
        response = api.client.post(
            f"{API}/products/{product}/images", json={"url": url}, headers=api.manager
        )
        assert (response.status_code, error_code(response)) == (422, "validation_error"), url
    unknown = api.client.post(
        f"{API}/products/999/images", json={"url": "https://img.example/x"}, headers=api.manager
    )
    assert (unknown.status_code, error_code(unknown)) == (404, "product_not_found")
    assert count(api, ProductImage) == 3


# --- the listing -------------------------------------------------------------------------


def test_pagination_walks_every_product_once(api):
    ids = seed_products(api, 23, active=lambda i: i % 5 != 0)
    active = [pid for i, pid in enumerate(ids) if i % 5 != 0]
    for limit in (1, 7, 18, 100):
        items = walk(api, {"limit": limit})
        assert [p["id"] for p in items] == active, limit
    # one more row than asked tells whether a page follows: no empty last page
    exact = api.client.get(f"{API}/products", params={"limit": 18}).json()
    assert (len(exact["items"]), exact["next_cursor"]) == (18, None)
    first = api.client.get(f"{API}/products", params={"limit": 17}).json()
    assert first["next_cursor"] is not None
    last = api.client.get(f"{API}/products", params={"cursor": first["next_cursor"]}).json()
    assert ([p["id"] for p in last["items"]], last["next_cursor"]) == ([active[-1]], None)
    assert walk(api, {"limit": 10}, api.manager) == [
        {
            "id": pid,
            "sku": f"SEED-{i:04d}",
            "name": f"Seeded {i}",
            "price": "1.00",
            "currency": "USD",  # TECNOREV_CURRENCY's default
            "is_active": i % 5 != 0,
            "category_id": None,
            "image_url": None,
        }
        for i, pid in enumerate(ids)
    ]


def test_the_category_filter_includes_every_subcategory(api):
    home = new_category(api, "home")
    lamps = new_category(api, "lamps", parent_id=home)
    desk = new_category(api, "desk-lamps", parent_id=lamps)
    garden = new_category(api, "garden")
    in_home = new_product(api, "H", category_id=home)
    in_lamps = new_product(api, "L", category_id=lamps)
    in_desk = new_product(api, "D", category_id=desk)
    new_product(api, "D-OLD", category_id=desk, is_active=False)
    new_product(api, "G", category_id=garden)
    new_product(api, "NONE")

    def listed(category, **extra):
        return [p["id"] for p in walk(api, {"category_id": category, "limit": 2, **extra})]

    assert listed(home) == [in_home, in_lamps, in_desk]
    assert listed(lamps) == [in_lamps, in_desk]
    assert listed(desk) == [in_desk]
    assert listed(999) == []
    assert listed(home, q="t d") == [in_desk]  # "Product D"


def test_search_matches_name_or_sku_ignoring_case(api):
    cotton = new_product(api, "TS-100", name="T-shirt 100% Cotton")
    blend = new_product(api, "TS-1000", name="T-shirt 1000 blend")
    snake = new_product(api, "SNAKE_CASE", name="Odd one")
    mug = new_product(api, "MUG-1", name="Mug")

    def found(q):
        return [p["id"] for p in walk(api, {"q": q})]

    assert found("cotton") == [cotton]
    assert found("T-SHIRT") == [cotton, blend]
    assert found("ts-100") == [cotton, blend]
    assert found("mug-1") == [mug]
    assert found("0%") == [cotton]  # % is a character, not a wildcard
    assert found("E_C") == [snake]  # and so is _
    assert found("_") == [snake]
    assert found("\\") == []
    assert found("") == [cotton, blend, snake, mug]  # an empty search does not filter


@contextmanager
def statements(*engines):
    seen = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if not statement.startswith("BEGIN"):  # transaction control (SQLite's is a statement)
            seen.append(statement)

    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)


def test_a_page_costs_the_same_statements_whatever_its_size(api):
    home = new_category(api, "home")
    lamps = new_category(api, "lamps", parent_id=home)
    seed_products(api, 60, category_id=lamps, active=lambda i: i % 7 != 0, image=True)
    api.client.get(f"{API}/products", params={"limit": 1})  # warm the pools and caches
    # public reads run on the app's reading engine, writes on its engine
    engines = (api.engine, api.client.app.state.read_engine)

    for params, headers in [
        ({}, None),
        ({"category_id": home, "q": "seeded"}, None),
        ({"sort": "-price"}, api.manager),
    ]:
        counts = {}
        for limit in (1, 50):
            with statements(*engines) as seen:
                response = api.client.get(
                    f"{API}/products", params={**params, "limit": limit}, headers=headers
                )
            assert response.status_code == 200
            page = response.json()
            assert len(page["items"]) == limit
            assert all(p["image_url"].endswith("/0") for p in page["items"])
            counts[limit] = len(seen)
        assert counts[1] == counts[50], (params, counts)
        # anonymous: the page and nothing else; a manager: the page and who they are
        assert counts[1] == (1 if headers is None else 2), (params, counts)


def test_awkward_text_and_prices_come_back_as_written(api):
    home = new_category(api, "home")
    prices = ["0.00", "12.50", "9999999999.99", "7"]
    names = ['Quote " and \\ backslash', "Ñandú café 日本 🎉", "tab\tand\nnewline", "x" * 200]
    for i, (name, price) in enumerate(zip(names, prices, strict=True)):
        new_product(api, f"ODD-{i}", name=name, price=price, category_id=home)
    first = api.client.get(f"{API}/products", params={"limit": 2}).json()
    assert [p["name"] for p in first["items"]] == names[:2]
    assert [p["price"] for p in walk(api, {})] == ["0.00", "12.50", "9999999999.99", "7.00"]
    # (SQLite's lower() folds ASCII letters only: "Ñ" is not found as "ñ" there)
    assert [p["name"] for p in walk(api, {"q": "CAFÉ"})] == [names[1]]
    assert [p["name"] for p in walk(api, {"q": '" and \\'})] == [names[0]]


def test_sorts_walk_every_product_once_in_order_with_ties_broken_by_id(api):
    prices = ["5.00", "1.00", "5.00", "3.00", "5.00", "1.00", "9.99"]
    names = ["b", "a", "b", "c", "a", "b", "a"]
    ids = [
        new_product(api, f"S-{i}", name=name, price=price)
        for i, (name, price) in enumerate(zip(names, prices, strict=True))
    ]
    rows = [
        (pid, Decimal(price), name) for pid, price, name in zip(ids, prices, names, strict=True)
    ]
    expected = {
        "price": sorted(rows, key=lambda r: (r[1], r[0])),
        "-price": sorted(rows, key=lambda r: (r[1], r[0]), reverse=True),
        "name": sorted(rows, key=lambda r: (r[2], r[0])),
        "-name": sorted(rows, key=lambda r: (r[2], r[0]), reverse=True),
        "-id": sorted(rows, reverse=True),
    }
    for sort, order in expected.items():
        for limit in (1, 2, 3, 100):
            listed = walk(api, {"sort": sort, "limit": limit})
            assert [p["id"] for p in listed] == [r[0] for r in order], (sort, limit)
    cheap = walk(api, {"price_min": "1.00", "price_max": "3.00", "sort": "price"})
    assert [p["price"] for p in cheap] == ["1.00", "1.00", "3.00"]
    # a cursor belongs to its sort
    by_price = api.client.get(f"{API}/products", params={"sort": "price", "limit": 1}).json()
    other = api.client.get(
        f"{API}/products", params={"sort": "name", "cursor": by_price["next_cursor"]}
    )
    assert (other.status_code, error_code(other)) == (422, "invalid_cursor")


def test_hostile_input_is_refused(api):
    product = new_product(api, "MUG-1")
    for params in [
        {"limit": 10**12},
        {"limit": 0},
        {"limit": 101},
        {"category_id": 2**31},
        {"category_id": 0},
        {"q": "a\x00b"},
        {"q": "x" * 101},
        {"cursor": "c" * 201},
        {"sort": "description"},
        {"sort": "+price"},
        {"price_min": "1.001"},
        {"price_min": "-1"},
        {"is_active": "1"},
        {"category_id": "01"},
        {"limit": "1.0"},
    ]:
        response = api.client.get(f"{API}/products", params=params)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), params
    forged = [b'["id",0.5]', b'["id","1"]', b'["-id",1]', b'["name",1,1]', b"[]", b'"id"', b"\xff"]
    cursors = [base64.urlsafe_b64encode(raw).decode() for raw in forged]
    for cursor in ["garbage", "%00", "====", *cursors]:
        response = api.client.get(f"{API}/products", params={"cursor": cursor})
        assert (response.status_code, error_code(response)) == (422, "invalid_cursor"), cursor
    for params in [{"include_inactive": "true"}, {"sortt": "-price"}, {"Limit": "1"}]:
        response = api.client.get(f"{API}/products", params=params)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), params
        assert response.json()["error"]["details"]["errors"][0]["type"] == "unknown_parameter"
    for path in [f"/products/{2**31}", f"/products/{2**63}", "/categories/0", "/products/x"]:
        response = api.client.get(API + path)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), path
    for path, body in [
        ("/categories", {"name": "Ho\x00me", "slug": "home"}),
        (f"/products/{product}/images", {"url": "https://img.example/a", "alt_text": "\x00"}),
        (f"/products/{product}/images/order", {"image_ids": [2**31]}),
        (f"/products/{product}/images/order", {"image_ids": list(range(1, 502))}),
    ]:
        response = api.client.request(
            "PUT" if path.endswith("order") else "POST", API + path, json=body, headers=api.manager
        )
        assert (response.status_code, error_code(response)) == (422, "validation_error"), path
    assert (count(api, Category), count(api, ProductImage)) == (0, 0)
    huge = api.client.post(
        f"{API}/products",
        json={"sku": "BIG", "name": "x" * 201, "price": "1"},
        headers=api.manager,
    )
    assert (huge.status_code, error_code(huge)) == (422, "validation_error")
    assert count(api, Product) == 1
    assert api.client.get(f"{API}/products/{product}").status_code == 200


# --- permissions -------------------------------------------------------------------------


def test_every_change_needs_catalog_manage(api):
    category = new_category(api, "home")
    product = new_product(api, "MUG-1")
    image = add_image(api, product, "https://img.example/a.jpg")
    almost = user_header(
        api.engine, "almost@example.com", permissions=all_permissions_but(CATALOG_MANAGE)
    )
    ids = {"category_id": category, "product_id": product, "image_id": image}
    changes = [
        (method, API_PREFIX + route.path_format.format(**ids))
        for route in router.routes
        for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert len(changes) == 8
    before = {model: count(api, model) for model in (Category, Product, ProductImage)}
    for method, path in changes:
        body = {"name": "x", "slug": "x", "sku": "x", "price": "1", "url": "https://x.example"}
        anonymous = api.client.request(method, path, json=body)
        assert (anonymous.status_code, error_code(anonymous)) == (401, "not_authenticated"), path
        denied = api.client.request(method, path, json=body, headers=almost)
        assert (denied.status_code, error_code(denied)) == (403, "permission_denied"), path
    assert {model: count(api, model) for model in before} == before
    assert api.client.get(f"{API}/categories/{category}").json()["name"] == "Home"


# --- services for other modules ----------------------------------------------------------


def test_get_active_products_reads_what_orders_need_in_one_query(api):
    on_sale = new_product(api, "A", price="3.50")
    retired = new_product(api, "B", is_active=False)
    with Session(api.engine) as session, statements(api.engine) as seen:
        found = service.get_active_products(session, [on_sale, retired, 999, on_sale])
        assert found == {on_sale: (on_sale, "A", "Product A", Decimal("3.50"), True)}
        assert found[on_sale].price == Decimal("3.50")
        assert len(seen) == 1
        everything = service.get_active_products(session, [retired], include_inactive=True)
        assert everything[retired].is_active is False
        assert service.get_active_products(session, []) == {}
        assert len(seen) == 2


# --- concurrency (PostgreSQL) ----------------------------------------------------------------


def test_two_crossing_moves_cannot_close_a_loop(postgres_url):
    migrate(postgres_url)
    engine = create_db_engine(postgres_url)
    try:
        with Session(engine) as session:
            a = service.create_category(session, name="A", slug="a")
            b = service.create_category(session, name="B", slug="b")
            session.commit()
            a_id, b_id = a.id, b.id
        first = Session(engine)
        service.update_category(first, a_id, changes={"parent_id": b_id})
        outcome = []

        def move_b_under_a():
            with Session(engine) as second:
                try:
                    service.update_category(second, b_id, changes={"parent_id": a_id})
                    second.commit()
                    outcome.append("moved")
                except CategoryCycle:
                    outcome.append("cycle")

        thread = run_blocked(move_b_under_a)
        first.commit()
        first.close()
        thread.join(10)
        assert outcome == ["cycle"]
        with Session(engine) as session:
            assert session.get(Category, b_id).parent_id is None
            assert session.get(Category, a_id).parent_id == b_id
    finally:
        engine.dispose()


def run_blocked(target):
    """Start ``target`` in a thread and check that it waits (for a lock held by the caller)."""
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive(), "the second transaction should wait for the first"
    return thread


def test_concurrent_image_additions_keep_positions_dense(postgres_url):
    migrate(postgres_url)
    engine = create_db_engine(postgres_url)
    try:
        with Session(engine) as session:
            product = service.create_product(session, sku="LAMP", name="Lamp", price=Decimal(1))
            session.commit()
            product_id = product.id
        first = Session(engine)
        service.add_image(first, product_id, url="https://img.example/1")

        def add_second():
            with Session(engine) as second:
                service.add_image(second, product_id, url="https://img.example/2")
                second.commit()

        thread = run_blocked(add_second)
        first.commit()
        first.close()
        thread.join(10)
        with Session(engine) as session:
            rows = service.list_images(session, product_id)
        assert [(row.url, row.position) for row in rows] == [
            ("https://img.example/1", 0),
            ("https://img.example/2", 1),
        ]
    finally:
        engine.dispose()


def test_a_product_added_while_its_category_is_deleted_is_refused(postgres_url):
    migrate(postgres_url)
    engine = create_db_engine(postgres_url)
    try:
        with Session(engine) as session:
            category = service.create_category(session, name="Old", slug="old")
            session.commit()
            category_id = category.id
        first = Session(engine)
        service.delete_category(first, category_id)
        outcome = []

        def add_product():
            with Session(engine) as second:
                try:
                    service.create_product(
                        second, sku="NEW", name="New", price=Decimal(1), category_id=category_id
                    )
                    second.commit()
                    outcome.append("stored")
                except sa.exc.IntegrityError:
                    outcome.append("refused")

        thread = run_blocked(add_product)
        first.commit()
        first.close()
        thread.join(10)
        # never stored with its category silently set to NULL
        assert outcome == ["refused"]
        with Session(engine) as session:
            assert session.execute(sa.select(sa.func.count()).select_from(Product)).scalar() == 0
    finally:
        engine.dispose()
