from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from tecnorev.auth.models import User
from tecnorev.catalog.models import Product
from tecnorev.core.registry import discover
from tecnorev.inventory.models import Branch, BranchStaff
from tecnorev.inventory.service import receive_stock
from tecnorev.logistics.models import Shipment
from tecnorev.sales import service as sales
from tecnorev.sales.models import Order, OrderStatus
from tecnorev.testing.auth import user_header
from tecnorev.testing.core import (  # noqa: F401
    api_app,
    api_client,
    backend,
    database_url,
    migrate,
    postgres_url,
)

SHIPMENTS = "/api/v1/logistics/shipments"
# What logistics needs, and nothing else: no module downstream of sales but itself.
LOGISTICS_ALONE = ("auth", "catalog", "inventory", "sales", "logistics")


@dataclass
class Shop:
    """A migrated database behind the API, with two stocked branches, a customer and staff:
    the clerk works at the first branch (``branch_id``), not at ``other_branch_id``."""

    client: TestClient
    engine: sa.Engine
    branch_id: int = 0
    other_branch_id: int = 0
    product_id: int = 0
    customer_id: int = 0

    def __post_init__(self) -> None:
        with Session(self.engine) as session:
            branches = [Branch(code="CEN", name="Centre"), Branch(code="NTH", name="North")]
            product = Product(sku="LAMP", name="Lamp", price=Decimal("19.90"))
            session.add_all([*branches, product])
            session.flush()
            for branch in branches:
                receive_stock(
                    session,
                    branch_id=branch.id,
                    quantities={product.id: 1000},
                    reference="opening stock",
                    author_id=None,
                )
            session.commit()
            self.branch_id, self.other_branch_id = (branch.id for branch in branches)
            self.product_id = product.id
        self.headers = {
            "manager": user_header(self.engine, "manager@example.com", roles=["manager"]),
            "clerk": user_header(self.engine, "clerk@example.com", roles=["clerk"]),
            "customer": user_header(self.engine, "customer@example.com", roles=["customer"]),
            "other": user_header(self.engine, "other@example.com", roles=["customer"]),
            "anonymous": {},
        }
        self.customer_id = self.user_id("customer@example.com")
        with Session(self.engine) as session:
            clerk_id = self.user_id("clerk@example.com")
            session.add(BranchStaff(branch_id=self.branch_id, user_id=clerk_id))
            session.commit()

    # --- setting up, through the sales services ------------------------------------------

    def order(
        self,
        status: OrderStatus = OrderStatus.CONFIRMED,
        quantity: int = 1,
        *,
        branch_id: int | None = None,
        customer_id: int | None = None,
    ) -> int:
        """A placed order of the customer (or of ``customer_id``) at the first branch (or at
        ``branch_id``), moved to ``status`` along the sales state machine."""
        path = {
            OrderStatus.PENDING: [],
            OrderStatus.CONFIRMED: [sales.confirm_order],
            OrderStatus.CANCELLED: [sales.cancel_order],
            OrderStatus.SHIPPED: [sales.confirm_order, sales.mark_shipped],
            OrderStatus.DELIVERED: [sales.confirm_order, sales.mark_shipped, sales.mark_delivered],
        }[status]
        with Session(self.engine) as session:
            placed = sales.place_order(
                session,
                customer_id=customer_id or self.customer_id,
                branch_id=branch_id or self.branch_id,
                items=[(self.product_id, quantity)],
            )
            for change in path:
                change(session, order_id=placed.order.id)
            session.commit()
            return placed.order.id

    # --- calling the API -------------------------------------------------------------------

    def create(self, order_id: int, tracking: str, carrier: str = "DHL", who: str = "manager"):
        body = {"order_id": order_id, "carrier": carrier, "tracking_number": tracking}
        return self.client.post(SHIPMENTS, json=body, headers=self.headers[who])

    def act(self, shipment_id: int, action: str, who: str = "manager"):
        return self.client.post(f"{SHIPMENTS}/{shipment_id}/{action}", headers=self.headers[who])

    def get(self, path: str = "", who: str = "manager", **params):
        return self.client.get(f"{SHIPMENTS}{path}", params=params, headers=self.headers[who])

    # --- reading what is stored ------------------------------------------------------------

    def order_status(self, order_id: int) -> OrderStatus:
        with Session(self.engine) as session:
            return session.get(Order, order_id).status

    def shipment(self, shipment_id: int) -> Shipment:
        with Session(self.engine) as session:
            return session.get(Shipment, shipment_id)

    def user_id(self, email: str) -> int:
        with Session(self.engine) as session:
            return session.exec(select(User.id).where(User.email == email)).one()

    def shipments(self) -> list[tuple[int, str]]:
        with Session(self.engine) as session:
            rows = session.exec(select(Shipment.order_id, Shipment.status).order_by(Shipment.id))
            return [(order_id, status.value) for order_id, status in rows]

    def refused(self, response, status: int, code: str) -> dict:
        """The error body of a refusal, after checking its status and code."""
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code, error
        return error

    def count(self, model: type) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(model)).one()


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:  # noqa: F811
    with api_client(database_url) as client:
        yield Shop(client, client.app.state.engine)


@pytest.fixture
def shop_without_others(database_url: str) -> Iterator[Shop]:  # noqa: F811
    """The shop on an app of logistics and its dependencies only, its database migrated to
    its heads: no other module's routes, tables or event subscribers."""
    for module in LOGISTICS_ALONE:
        migrate(database_url, f"{module}@head")
    registry = discover(only=LOGISTICS_ALONE)
    app = api_app(database_url, registry=registry)
    try:
        with TestClient(app) as client:
            yield Shop(client, app.state.engine)
    finally:
        app.state.engine.dispose()


@pytest.fixture
def pg_shop(postgres_url: str) -> Iterator[Shop]:  # noqa: F811
    """The shop on PostgreSQL only, for races that depend on its row locks."""
    with api_client(postgres_url) as client:
        yield Shop(client, client.app.state.engine)
