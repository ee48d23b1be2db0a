"""A typed client generated from the service's /openapi.json by a kept generator
(openapi-python-client) walks the README's scenario: the catalogue and the branches read
anonymously, an order placed with a coupon and an Idempotency-Key (and replayed), confirmed,
shipped and delivered by staff, and a refusal read as the documented error body."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.auth.demo import DEMO_PASSWORD
from tecnorev.core.demo import load_demo
from tecnorev.testing.core import migrate

PACKAGE = "tecnorev_client"


@pytest.fixture
def generated(tmp_path) -> Iterator[tuple[Any, TestClient]]:
    url = f"sqlite:///{tmp_path / 'client.db'}"
    migrate(url)
    app = create_app(database_url=url)
    try:
        with TestClient(app) as http:
            list(load_demo(engine=app.state.engine))
            spec = tmp_path / "openapi.json"
            spec.write_text(json.dumps(http.get("/openapi.json").json()), encoding="utf-8")
            config = tmp_path / "generator.yaml"
            config.write_text(f"package_name_override: {PACKAGE}\n", encoding="utf-8")
            generator = Path(sys.executable).parent / "openapi-python-client"
            made = subprocess.run(
                [str(generator), "generate", "--path", str(spec), "--config", str(config),
                 "--meta", "none", "--output-path", str(tmp_path / PACKAGE)],
                capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert made.returncode == 0, made.stdout + made.stderr
            # the generator warns about every part of the document it cannot turn into code
            assert "Warning" not in made.stdout + made.stderr, made.stdout + made.stderr
            sys.path.insert(0, str(tmp_path))
            try:
                yield importlib.import_module(PACKAGE), http
            finally:
                sys.path.remove(str(tmp_path))
                for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
                    del sys.modules[name]
    finally:
        app.state.engine.dispose()


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_walks_the_readme_scenario(generated):
    client_package, http = generated
    anonymous = client_package.Client(base_url="http://testserver")
    anonymous.set_httpx_client(http)
    auth = "api.auth."
    log_in = _module(auth + "auth_log_in")
    body_model = _module("models.body_auth_log_in").BodyAuthLogIn

    def session_of(email: str) -> Any:
        token = log_in.sync(
            client=anonymous, body=body_model(username=email, password=DEMO_PASSWORD)
        )
        assert token is not None and hasattr(token, "access_token"), token
        client = client_package.AuthenticatedClient(base_url="http://testserver", token="-")
        client.set_httpx_client(
            TestClient(http.app, headers={"Authorization": f"Bearer {token.access_token}"})
        )
        return client

    ana, manager = session_of("ana@example.com"), session_of("manager@example.com")

    # the catalogue and the branches are public: typed pages, followed by their cursors
    products = _module("api.catalog.catalog_list_products")
    page = products.sync(client=anonymous, q="drill", limit=2)
    drills = list(page.items)
    while isinstance(page.next_cursor, str):
        page = products.sync(client=anonymous, q="drill", limit=2, cursor=page.next_cursor)
        drills += page.items
    assert len(drills) >= 2 and all("drill" in p.name.lower() for p in drills)
    assert all(isinstance(p.price, str) for p in drills)
    branches = _module("api.inventory.inventory_list_branches").sync(client=anonymous).items
    centro = next(b for b in branches if b.code == "CENTRO")

    # Ana orders with a coupon; the same Idempotency-Key returns the same order
    models = _module("models")
    order_body = models.OrderCreate(
        branch_id=centro.id,
        items=[models.OrderLineIn(product_id=p.id, quantity=1) for p in drills[:2]],
        coupon_code="WELCOME10",
    )
    place = _module("api.sales.sales_place_order")
    placed = place.sync_detailed(client=ana, body=order_body, idempotency_key="ana-0001")
    assert placed.status_code == 201, placed.content
    order = placed.parsed
    assert (order.status, order.coupon_id is not None) == (models.OrderStatus.PENDING, True)
    again = place.sync_detailed(client=ana, body=order_body, idempotency_key="ana-0001")
    assert (again.status_code, again.parsed.id) == (200, order.id)

    # staff confirm, ship and deliver it
    confirmed = _module("api.sales.sales_confirm_order").sync(client=manager, order_id=order.id)
    assert confirmed.status == models.OrderStatus.CONFIRMED
    shipment = _module("api.logistics.logistics_create_shipment").sync(
        client=manager,
        body=models.ShipmentCreate(order_id=order.id, carrier="DHL", tracking_number="JD01460"),
    )
    _module("api.logistics.logistics_ship_shipment").sync(client=manager, shipment_id=shipment.id)
    _module("api.logistics.logistics_deliver_shipment").sync(
        client=manager, shipment_id=shipment.id
    )
    final = _module("api.sales.sales_get_order").sync(client=ana, order_id=order.id)
    assert final.status == models.OrderStatus.DELIVERED

    # a refusal comes back as the documented error body, its code one the operation lists
    refused = place.sync_detailed(
        client=ana,
        body=models.OrderCreate(
            branch_id=centro.id,
            items=[models.OrderLineIn(product_id=drills[0].id, quantity=100000)],
        ),
    )
    assert refused.status_code == 409
    error = refused.parsed.error
    assert error.code == "insufficient_stock"
    assert error.details.additional_properties["shortages"][0]["requested"] == 100000
    documented = http.get("/openapi.json").json()["paths"]["/api/v1/sales/orders"]["post"]
    assert "insufficient_stock" in documented["responses"]["409"]["x-error-codes"]
