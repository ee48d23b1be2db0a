from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tecnorev.auth.models import User
from tecnorev.inventory.service import assign_staff
from tecnorev.testing.auth import user_header
from tecnorev.testing.core import api_client, backend, database_url, postgres_url  # noqa: F401
from tecnorev.testing.inventory import (
    add_branch,
    add_products,
    assert_ledger_matches,
    count_rows,
    stock_of,
)

INV = "/api/v1/inventory"


@dataclass
class Shop:
    """A migrated database behind the API: two branches, three products, and users."""

    client: TestClient
    engine: sa.Engine
    branches: list[int]
    products: list[int]
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{INV}{path}"

    def post(self, path: str, body: dict, who: str = "manager"):
        return self.client.post(self.url(path), json=body, headers=self.headers[who])

    def get(self, path: str, who: str = "manager", **params):
        return self.client.get(self.url(path), params=params, headers=self.headers[who])

    def receive(self, branch_id: int, quantities: dict[int, int], reference: str = "R-1") -> None:
        lines = [{"product_id": p, "quantity": q} for p, q in quantities.items()]
        response = self.post(
            "/receipts", {"branch_id": branch_id, "lines": lines, "reference": reference}
        )
        assert response.status_code == 201, response.text

    def staff(self, email: str, *branch_ids: int) -> int:
        """Make the user ``email`` staff of ``branch_ids``; its id."""
        with Session(self.engine) as session:
            user_id = session.exec(select(User.id).where(User.email == email)).one()
            for branch_id in branch_ids:
                assign_staff(session, branch_id=branch_id, user_id=user_id)
            session.commit()
        return user_id

    def stock(self, branch_id: int, product_id: int) -> int | None:
        return stock_of(self.engine, branch_id, product_id)

    def count(self, table: str) -> int:
        return count_rows(self.engine, table)

    def assert_ledger_matches(self) -> None:
        assert_ledger_matches(self.engine)


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:  # noqa: F811
    with api_client(database_url) as client:
        engine = client.app.state.engine
        shop = Shop(
            client=client,
            engine=engine,
            branches=[add_branch(engine, "NORTH"), add_branch(engine, "SOUTH")],
            products=add_products(engine, "lamp", "desk", "chair"),
        )
        shop.headers = {
            "manager": user_header(engine, "manager@example.com", roles=["manager"]),
            "clerk": user_header(engine, "clerk@example.com", roles=["clerk"]),
            "customer": user_header(engine, "customer@example.com", roles=["customer"]),
            "anonymous": {},
        }
        yield shop
        # the invariant every scenario must leave behind
        shop.assert_ledger_matches()
