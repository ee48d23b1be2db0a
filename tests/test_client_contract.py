"""What a client of the composed API can count on, beyond the schema's shapes.

* Strict input: an integer is a JSON integer, a boolean a JSON boolean, an id in a path or
  query is written in canonical digits, money is a decimal string, a moment an ISO 8601 date
  and time with its offset, ``null`` in a partial update only where it empties a column.
  Each loose form the API once took is refused here with the one validation error.
* A route that needs a login answers an anonymous caller 401 before judging the request.
* 405 answers (and OPTIONS) name every method of the path in ``Allow``.
* CORS and gzip follow their settings.
* Schemathesis, run as its command line runs it (every phase, every check, a fixed seed)
  against the served API on PostgreSQL, finds nothing but what ``NOT_APPLICABLE`` lists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.registry import get_registry
from tecnorev.core.settings import get_settings
from tecnorev.core.web import API_PREFIX
from tecnorev.core.web.composition import module_routers
from tecnorev.testing.core import BACKENDS, fresh_database, migrate, run_tecnorev

from .contract_cases import World
from .serving import TECNOREV, _env, demo_database, start_server, token

ORDER_LINE = {"product_id": 1, "quantity": 1}


@contextmanager
def seeded_app(backend: str, folder: Path) -> Iterator[World]:
    """The composed app on a fresh migrated database, with the contract test's seed data
    (the settings are read as the app is made)."""
    with fresh_database(backend, folder) as url:
        migrate(url)
        app = create_app(database_url=url)
        try:
            with TestClient(app) as client:
                yield World(client, app.state.engine)
        finally:
            app.state.engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with seeded_app(request.param, tmp_path_factory.mktemp("client")) as seeded:
        yield seeded


def _order(world: World, **line: Any) -> dict[str, Any]:
    body = world.order_body(None)
    body["items"] = [{**body["items"][0], **line}]
    return body


def _loose_bodies(world: World) -> list[tuple[str, str, Any, str]]:
    """(method, path, body, the field refused) for each loose form."""
    category = f"/catalog/categories/{world.category_id}"
    product = f"/catalog/products/{world.product_id}"
    branch = f"/inventory/branches/{world.branch_id}"
    user = f"/auth/users/{world.customer_id}"
    coupon = f"/sales/coupons/{world.coupon_id}"
    return [
        *(
            ("POST", "/sales/orders", _order(world, quantity=q), "quantity")
            for q in ("1", True, 1.0)
        ),
        *(("POST", "/sales/orders", _order(world, product_id=p), "product_id") for p in ("1", 1.5)),
        ("PATCH", user, {"is_active": 0}, "is_active"),
        ("PATCH", user, {"is_active": "false"}, "is_active"),
        ("PATCH", user, {"is_active": None}, "is_active"),
        ("PATCH", branch, {"is_active": None}, "is_active"),
        ("PATCH", branch, {"is_active": 1}, "is_active"),
        ("PATCH", product, {"is_active": 0}, "is_active"),
        ("PATCH", product, {"price": None}, "price"),
        ("PATCH", product, {"price": 19.9}, "price"),  # a binary float cannot hold cents
        ("PATCH", product, {"price": "19.999"}, "price"),
        ("PATCH", product, {"price": "1e3"}, "price"),
        ("PATCH", product, {"price": "-1"}, "price"),
        ("PATCH", category, {"name": None}, "name"),
        ("PATCH", coupon, {"is_active": None}, "is_active"),
        ("PATCH", coupon, {"valid_until": 1893456000}, "valid_until"),  # seconds, not a moment
        ("PATCH", coupon, {"valid_until": "2030-01-01T00:00:00"}, "valid_until"),  # no offset
        (
            "POST",
            f"{product}/images",
            {"url": "https://x.example/a.jpg", "position": False},
            "position",
        ),
        ("POST", f"{product}/images", {"url": "http://[::1"}, "url"),  # its host does not parse
        (
            "POST",
            f"{product}/images",
            {"url": "https://x.example/a.jpg", "position": 1.0},
            "position",
        ),
    ]


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error", error
    # a field's own problem names it in loc; a null refused by the partial update, in its message
    where = [
        ".".join(str(part) for part in problem["loc"]) + " " + problem["message"]
        for problem in error["details"]["errors"]
    ]
    assert any(field in place for place in where), (field, where)


def test_loose_bodies_are_refused_and_change_nothing(world: World) -> None:
    for method, path, body, field in _loose_bodies(world):
        before = (
            world.client.get(API_PREFIX + path, headers=world.admin) if method == "PATCH" else None
        )
        response = world.client.request(method, API_PREFIX + path, json=body, headers=world.admin)
        _refused(response, field)
        if before is not None:
            after = world.client.get(API_PREFIX + path, headers=world.admin)
            assert after.json() == before.json(), (method, path, body)


def test_null_empties_only_the_columns_that_may_be_empty(world: World) -> None:
    category = world.new_category(parent_id=world.category_id)
    emptied = world.client.patch(
        f"{API_PREFIX}/catalog/categories/{category}", json={"parent_id": None}, headers=world.admin
    )
    assert (emptied.status_code, emptied.json()["parent_id"]) == (200, None)
    lifted = world.client.patch(
        f"{API_PREFIX}/sales/coupons/{world.coupon_id}",
        json={"usage_limit": None, "valid_until": "2030-01-01T00:00:00+01:00"},
        headers=world.admin,
    )
    assert lifted.status_code == 200, lifted.text
    assert lifted.json()["usage_limit"] is None
    assert lifted.json()["valid_until"].startswith("2029-12-31T23:00:00")


@pytest.mark.parametrize(
    "written", ["01", "+1", " 1", "1.0", "1e0", "0x1", "-1", "0", "2147483648"]
)
def test_ids_in_paths_and_queries_are_canonical_digits(world: World, written: str) -> None:
    path = world.client.get(f"{API_PREFIX}/sales/orders/{written}", headers=world.admin)
    # a segment that is not digits matches no route with a digits id; else the id's own check
    assert path.status_code in (404, 422) and "error" in path.json(), path.text
    if path.status_code == 404:
        assert path.json()["error"]["code"] in ("not_found", "order_not_found")
        assert not written.isdigit() or int(written) > 2**31 - 1 or int(written) == 0
    query = world.client.get(
        f"{API_PREFIX}/sales/orders", params={"branch_id": written}, headers=world.admin
    )
    _refused(query, "branch_id")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/sales/orders", {"created_from": "0.5"}, "created_from"),
        ("/sales/orders", {"created_from": "2026-01-01"}, "created_from"),  # no time, no offset
        ("/inventory/movements", {"created_from": "1700000000"}, "created_from"),
        ("/catalog/products", {"is_active": "1"}, "is_active"),
        ("/catalog/products", {"is_active": "True"}, "is_active"),
        ("/catalog/products", {"limit": "01"}, "limit"),
        ("/catalog/products", {"limit": "10.0"}, "limit"),
        ("/catalog/products", {"price_min": "1e3"}, "price_min"),
        ("/catalog/products", {"price_min": "NaN"}, "price_min"),
        ("/catalog/products", {"sortt": "name"}, "sortt"),
    ],
)
def test_loose_query_parameters_are_refused(
    world: World, path: str, params: dict, field: str
) -> None:
    _refused(world.client.get(API_PREFIX + path, params=params, headers=world.admin), field)


def test_a_moment_with_its_offset_filters(world: World) -> None:
    orders = world.client.get(
        f"{API_PREFIX}/sales/orders",
        params={"created_from": "2000-01-01T00:00:00Z", "limit": 100},
        headers=world.admin,
    )
    assert orders.status_code == 200, orders.text
    assert orders.json()["items"]


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", "/sales/orders", b"{not json"),
        ("POST", "/sales/orders", b'{"lines": "x"}'),
        ("PATCH", "/catalog/products/01", b'{"price": 1}'),
        ("POST", "/inventory/adjustments", b"[]"),
        ("GET", "/sales/orders/abc", None),
        ("GET", "/sales/orders", None),
    ],
)
def test_an_anonymous_caller_is_told_to_log_in_before_the_request_is_judged(
    world: World, method: str, path: str, content: bytes | None
) -> None:
    headers = {"Content-Type": "application/json"} if content is not None else {}
    response = world.client.request(method, API_PREFIX + path, content=content, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _methods_by_path(world: World) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for _, router in module_routers(get_registry()):
        for route in router.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                found.setdefault(API_PREFIX + route.path_format, set()).update(route.methods)
    return found


def test_405_and_options_name_every_method_of_the_path(world: World) -> None:
    concrete = {
        "{product_id}": str(world.product_id),
        "{image_id}": str(world.image_id),
        "{order_id}": str(world.paid_order["id"]),
        "{branch_id}": str(world.branch_id),
        "{user_id}": str(world.customer_id),
        "{category_id}": str(world.category_id),
        "{coupon_id}": str(world.coupon_id),
        "{shipment_id}": str(world.shipment_id),
        "{payment_id}": str(world.payment_id),
    }
    paths = _methods_by_path(world)
    for template, methods in paths.items():
        path = template
        for name, value in concrete.items():
            path = path.replace(name, value)
        assert "{" not in path, f"no value for a parameter of {template}"
        unsupported = next(m for m in ("DELETE", "PUT", "PATCH", "POST", "GET") if m not in methods)
        for method in (unsupported, "OPTIONS"):
            response = world.client.request(method, path, headers=world.admin)
            assert response.status_code == 405, (method, path, response.text)
            assert set(response.headers["Allow"].split(", ")) == methods, (method, path)
            assert response.json()["error"]["code"] == "method_not_allowed"
    assert len(paths) > 30
    # the fixed word beside an id is not taken for an image id
    order = world.client.delete(
        f"{API_PREFIX}/catalog/products/{world.product_id}/images/order", headers=world.admin
    )
    assert (order.status_code, order.headers["Allow"]) == (405, "PUT")


@pytest.fixture
def configured_app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    monkeypatch.setenv("TECNOREV_CORS_ORIGINS", "https://shop.example.com")
    monkeypatch.setenv("TECNOREV_GZIP_MIN_SIZE", "500")
    with seeded_app("sqlite", tmp_path) as seeded:
        yield seeded


def test_cors_and_gzip_follow_their_settings(configured_app: World) -> None:
    world = configured_app
    client = world.client
    preflight = client.options(
        f"{API_PREFIX}/catalog/products",
        headers={
            "Origin": "https://shop.example.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    stranger = client.options(
        f"{API_PREFIX}/catalog/products",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "Access-Control-Allow-Origin" not in stranger.headers

    for _ in range(5):
        world.new_product()
    listed = client.get(
        f"{API_PREFIX}/catalog/products",
        params={"limit": 50},
        headers={"Accept-Encoding": "gzip", "Origin": "https://shop.example.com"},
    )
    assert listed.headers["Content-Encoding"] == "gzip"
    assert listed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert len(listed.json()["items"]) >= 5  # httpx decoded it
    small = client.get(f"{API_PREFIX}/auth/me", headers={"Accept-Encoding": "gzip"})
    assert small.status_code == 401 and len(small.content) < 500
    assert "Content-Encoding" not in small.headers  # under the minimum size


def test_without_the_settings_no_cors_and_default_gzip(world: World) -> None:
    document = world.client.get(
        "/openapi.json", headers={"Origin": "https://shop.example.com", "Accept-Encoding": "gzip"}
    )
    assert "Access-Control-Allow-Origin" not in document.headers
    assert document.headers.get("Content-Encoding") == "gzip"  # default minimum: 1000 bytes
    assert int(document.headers["Content-Length"]) < len(document.content) / 4
    small = world.client.get(f"{API_PREFIX}/auth/me", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers


# --- Schemathesis as its command line runs ---------------------------------------------------

# Checks that cannot judge this API, with the reason.
NOT_APPLICABLE = {
    # expects a 2xx for any request valid by the schema; a valid request may still break a
    # rule of the stored data (more than the stock, an id that does not exist, a state)
    "positive_data_acceptance": "valid requests are refused by the state of the data",
}
# Operations left out of the run: they end the one login it has (checked in
# test_api_contract.py, where each gets a login of its own).
ENDS_LOGIN = ["/api/v1/auth/logout", "/api/v1/auth/password"]
SEED = 20261206
ADMIN = "admin@example.com"
ADMIN_PASSWORD = "contract-admin-2026"


@pytest.mark.postgres
def test_schemathesis_finds_no_non_conformance(tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
    assert schemathesis is not None, "schemathesis is a test requirement"
    with demo_database() as url:
        subprocess.run(
            [TECNOREV, "users", "create-admin", "--email", ADMIN, "--password", ADMIN_PASSWORD],
            env=_env(url),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = start_server(url, 1, tmp_path)
        try:
            access = token(server.base, ADMIN, ADMIN_PASSWORD)["access_token"]
            report = tmp_path / "junit.xml"
            command = [
                schemathesis,
                "run",
                f"{server.base}/openapi.json",
                "--checks",
                "all",
                "--exclude-checks",
                ",".join(NOT_APPLICABLE),
                *(f"--exclude-path={path}" for path in ENDS_LOGIN),
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--seed",
                str(SEED),
                "--max-examples",
                "10",
                "--request-timeout",
                "30",
                "--header",
                f"Authorization: Bearer {access}",
                "--report",
                "junit",
                "--report-junit-path",
                str(report),
                "--no-color",
            ]
            run = subprocess.run(
                command, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False
            )
        finally:
            server.stop()
    failures = [
        f"{case.get('name')}: {(failure.text or failure.get('message') or '')[:600]}"
        for case in ET.parse(report).iter("testcase")
        for failure in case
        if failure.tag in ("failure", "error")
    ]
    assert run.returncode == 0 and not failures, "\n".join(failures) or run.stdout[-4000:]
    summary = run.stdout[run.stdout.rfind("SUMMARY") :]
    assert "Tested: " in summary, summary
    print(json.dumps({"schemathesis": summary.splitlines()[-3:]}))


@pytest.fixture
def euro_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    monkeypatch.setenv("TECNOREV_CURRENCY", " eur ")
    get_settings.cache_clear()
    try:
        with seeded_app("sqlite", tmp_path) as seeded:
            yield seeded
    finally:
        monkeypatch.delenv("TECNOREV_CURRENCY")
        get_settings.cache_clear()


def test_money_comes_with_the_stores_currency(euro_store: World) -> None:
    world = euro_store
    product = world.send("GET", f"/catalog/products/{world.product_id}")
    listed = world.send("GET", "/catalog/products")["items"]
    order = world.send("GET", f"/sales/orders/{world.pending_order['id']}")
    orders = world.send("GET", "/sales/orders")["items"]
    assert product["currency"] == order["currency"] == "EUR"
    assert {p["currency"] for p in listed} == {o["currency"] for o in orders} == {"EUR"}
    assert world.pending_order["currency"] == "EUR"  # as placed
    payment = world.send("GET", f"/payments/{world.payment_id}")
    assert payment["currency"] == "EUR"  # left out when paid: the store's


def test_a_currency_that_is_not_iso_4217_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    result = run_tecnorev("settings", env={"TECNOREV_CURRENCY": "EURO"}, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    line = next(line for line in output.splitlines() if "TECNOREV_CURRENCY" in line)
    assert "not an ISO 4217 currency code" in output, line
