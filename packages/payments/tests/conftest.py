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
from tecnorev.payments.models import Payment, PaymentStatus
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

PAYMENTS = "/api/v1/payments"
ORDERS = "/api/v1/sales/orders"
PRICE = Decimal("19.90")
# Sales and what it needs: the app as it runs where payments is not installed.
WITHOUT_PAYMENTS = ("auth", "catalog", "inventory", "sales")


@dataclass
class Shop:
    """A migrated database behind the API, with a stocked branch (lamps at 19.90), a customer
    and staff."""

    client: TestClient
    engine: sa.Engine
    branch_id: int = 0
    product_id: int = 0
    customer_id: int = 0

    def __post_init__(self) -> None:
        with Session(self.engine) as session:
            product = Product(sku="LAMP", name="Lamp", price=PRICE)
            session.add(product)
            session.commit()
            self.product_id = product.id
        self.branch_id = self.branch("CEN")
        self.headers = {
            "manager": user_header(self.engine, "manager@example.com", roles=["manager"]),
            "clerk": user_header(self.engine, "clerk@example.com", roles=["clerk"]),
            "customer": user_header(self.engine, "customer@example.com", roles=["customer"]),
            "other": user_header(self.engine, "other@example.com", roles=["customer"]),
            "anonymous": {},
        }
        with Session(self.engine) as session:
            self.customer_id = session.exec(
                select(User.id).where(User.email == "customer@example.com")
            ).one()

    # --- setting up, through the sales services ------------------------------------------

    def branch(self, code: str) -> int:
        """A branch stocked with 1000 lamps."""
        with Session(self.engine) as session:
            branch = Branch(code=code, name=code.title())
            session.add(branch)
            session.flush()
            receive_stock(
                session,
                branch_id=branch.id,
                quantities={self.product_id: 1000},
                reference="opening stock",
                author_id=None,
            )
            session.commit()
            return branch.id

    def staff(self, email: str, branch_id: int) -> int:
        """Make the user ``email`` staff of the branch; its id."""
        with Session(self.engine) as session:
            user_id = session.exec(select(User.id).where(User.email == email)).one()
            session.add(BranchStaff(branch_id=branch_id, user_id=user_id))
            session.commit()
            return user_id

    def order(
        self,
        status: OrderStatus = OrderStatus.PENDING,
        quantity: int = 2,
        *,
        branch_id: int | None = None,
        customer_id: int | None = None,
    ) -> int:
        """A placed order of the customer (or of ``customer_id``; ``quantity`` lamps) at the
        first branch (or at ``branch_id``), moved to ``status`` along the sales state
        machine."""
        path = {
            OrderStatus.PENDING: [],
            OrderStatus.CONFIRMED: [sales.confirm_order],
            OrderStatus.CANCELLED: [sales.cancel_order],
            OrderStatus.SHIPPED: [sales.confirm_order, sales.mark_shipped],
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

    def pay(
        self,
        order_id: int,
        amount: str,
        reference: str,
        *,
        provider: str = "card",
        currency: str | None = "USD",
        who: str = "manager",
    ):
        body = {
            "order_id": order_id,
            "amount": amount,
            **({} if currency is None else {"currency": currency}),
            "provider": provider,
            "provider_reference": reference,
        }
        return self.client.post(PAYMENTS, json=body, headers=self.headers[who])

    def get(self, path: str = "", who: str = "manager", **params):
        return self.client.get(f"{PAYMENTS}{path}", params=params, headers=self.headers[who])

    def cancel(self, order_id: int, who: str = "manager"):
        return self.client.post(f"{ORDERS}/{order_id}/cancel", headers=self.headers[who])

    def refused(self, response, status: int, code: str) -> dict:
        """The error body of a refusal, after checking its status and code."""
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code, error
        return error

    # --- reading what is stored ------------------------------------------------------------

    def order_row(self, order_id: int) -> Order:
        with Session(self.engine) as session:
            return session.get(Order, order_id)

    def order_status(self, order_id: int) -> OrderStatus:
        return self.order_row(order_id).status

    def payments(self, order_id: int | None = None) -> list[tuple[Decimal, PaymentStatus]]:
        with Session(self.engine) as session:
            statement = select(Payment.amount, Payment.status).order_by(Payment.id)
            if order_id is not None:
                statement = statement.where(Payment.order_id == order_id)
            return [(amount, status) for amount, status in session.exec(statement)]

    def count(self, model: type) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(model)).one()


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:  # noqa: F811
    with api_client(database_url) as client:
        yield Shop(client, client.app.state.engine)


@pytest.fixture
def pg_shop(postgres_url: str) -> Iterator[Shop]:  # noqa: F811
    """The shop on PostgreSQL only, for races that depend on its row locks."""
    with api_client(postgres_url) as client:
        yield Shop(client, client.app.state.engine)


@pytest.fixture
def shop_without_payments(database_url: str) -> Iterator[Shop]:  # noqa: F811
    """The shop on an app built without the payments module (its routes and its event
    subscriber), over a database that still holds the payment table from when it was
    installed."""
    migrate(database_url, "heads")
    registry = discover(only=WITHOUT_PAYMENTS)
    app = api_app(database_url, registry=registry)
    try:
        with TestClient(app) as client:
            yield Shop(client, app.state.engine)
    finally:
        app.state.engine.dispose()
