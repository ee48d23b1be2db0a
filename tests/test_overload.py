"""Storms on one row lock against real ``tecnorev serve`` processes on PostgreSQL, with the
default settings: every request is answered within its bounds, never with a 500; ``/health``
answers throughout; the worker serves normally afterwards and holds no more connections than
its pools; exactly one request changes the contended record.

With 40+ requests waiting on one order's lock, the worker used to freeze for good: the lock
holder needed a thread that the waiters held (see ``tecnorev.core.web.admission``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from .serving import (
    CUSTOMER,
    MANAGER,
    STORM,
    Server,
    assert_serves_normally,
    bearer,
    demo_database,
    in_stock_product,
    order_movements,
    order_status,
    place_order,
    start_server,
    storm,
    token,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.exclusive]


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    with demo_database() as url:
        yield url


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def server(request, demo_url, tmp_path_factory) -> Iterator[Server]:
    running = start_server(demo_url, request.param, tmp_path_factory.mktemp("serve"))
    try:
        yield running
    finally:
        running.stop()


# --------------------------------------------------------------------------- the storms


def test_staff_confirming_one_order_at_once(server, demo_url):
    manager = bearer(token(server.base, MANAGER))
    order_id = place_order(server.base, token(server.base, CUSTOMER), in_stock_product(demo_url))
    path = f"/api/v1/sales/orders/{order_id}/confirm"

    result = asyncio.run(
        storm(server.base, [lambda c: c.post(path, headers=manager) for _ in range(STORM)])
    )

    result.check()
    assert result.statuses[200] == 1, result
    assert order_status(demo_url, order_id) == "CONFIRMED"
    assert_serves_normally(server, demo_url)


def test_staff_cancelling_one_order_at_once(server, demo_url):
    manager = bearer(token(server.base, MANAGER))
    order_id = place_order(server.base, token(server.base, CUSTOMER), in_stock_product(demo_url))
    path = f"/api/v1/sales/orders/{order_id}/cancel"

    result = asyncio.run(
        storm(server.base, [lambda c: c.post(path, headers=manager) for _ in range(STORM)])
    )

    result.check()
    assert result.statuses[200] == 1, result
    assert order_status(demo_url, order_id) == "CANCELLED"
    assert order_movements(demo_url, order_id) == 2  # taken once, given back once
    assert_serves_normally(server, demo_url)


def test_a_customer_cancelling_their_order_at_once(server, demo_url):
    customer = token(server.base, CUSTOMER)
    order_id = place_order(server.base, customer, in_stock_product(demo_url))
    path = f"/api/v1/sales/orders/{order_id}/cancel"
    headers = bearer(customer)

    result = asyncio.run(
        storm(server.base, [lambda c: c.post(path, headers=headers) for _ in range(STORM)])
    )

    result.check()
    assert result.statuses[200] == 1, result
    assert order_status(demo_url, order_id) == "CANCELLED"
    assert order_movements(demo_url, order_id) == 2
    assert_serves_normally(server, demo_url)


def test_refreshing_one_token_at_once(server, demo_url):
    refresh = token(server.base, "carla@example.com")["refresh_token"]
    body = {"refresh_token": refresh}

    result = asyncio.run(
        storm(
            server.base,
            [lambda c: c.post("/api/v1/auth/refresh", json=body) for _ in range(STORM)],
        )
    )

    result.check()
    assert result.statuses[200] == 1, result  # the token works once
    assert_serves_normally(server, demo_url)


@pytest.mark.parametrize("clients", [100, STORM])
def test_orders_for_the_last_units_of_a_product(server, demo_url, clients):
    product_id = in_stock_product(demo_url)
    manager = bearer(token(server.base, MANAGER))
    stock = httpx.get(
        server.base + f"/api/v1/inventory/stock?branch_id=1&product_id={product_id}",
        headers=manager,
        timeout=10,
    ).json()["items"][0]["quantity"]
    adjusted = httpx.post(
        server.base + "/api/v1/inventory/adjustments",
        json={
            "branch_id": 1,
            "product_id": product_id,
            "quantity_delta": 10 - stock,
            "reason": "count before the storm",
        },
        headers=manager,
        timeout=10,
    )
    assert adjusted.status_code == 201, adjusted.text
    customers = [bearer(token(server.base, e)) for e in ("ana@example.com", "bruno@example.com")]
    body = {"branch_id": 1, "items": [{"product_id": product_id, "quantity": 1}]}

    result = asyncio.run(
        storm(
            server.base,
            [
                lambda c, h=customers[i % 2]: c.post("/api/v1/sales/orders", json=body, headers=h)
                for i in range(clients)
            ],
        )
    )

    result.check()
    assert result.statuses[201] == 10, result
    assert set(result.codes) <= {"insufficient_stock", "overloaded", "resource_busy"}, result
    assert_serves_normally(server, demo_url)
