from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from tecnorev.catalog.models import Product
from tecnorev.core.types import utcnow
from tecnorev.inventory.models import (
    Branch,
    BranchStaff,
    InventoryMovement,
    MovementReason,
    StockEntry,
)
from tecnorev.sales.models import Coupon, CouponKind, Order, OrderItem
from tecnorev.testing.auth import create_user, login_header
from tecnorev.testing.core import api_client, backend, database_url, postgres_url  # noqa: F401


class Shop:
    """A migrated database with the API in front of it, and quick ways to stock it and to
    read what was stored."""

    def __init__(self, client, engine: sa.Engine) -> None:
        self.client = client
        self.engine = engine

    # --- setting up ------------------------------------------------------------------------

    def user(self, email: str, *, roles=(), permissions=None) -> tuple[int, dict[str, str]]:
        with Session(self.engine) as session:
            user = create_user(session, email, roles=roles, permissions=permissions)
            header = login_header(session, user.id)
            session.commit()
            return user.id, header

    def product(self, sku: str, price: str = "10.00", *, active: bool = True) -> int:
        return self._add(Product(sku=sku, name=sku.title(), price=Decimal(price), is_active=active))

    def branch(self, code: str = "CEN", *, active: bool = True) -> int:
        return self._add(Branch(code=code, name=code.title(), is_active=active))

    def receive(self, branch_id: int, product_id: int, quantity: int) -> None:
        """Stock through the ledger, so stock always equals the sum of movements."""
        with Session(self.engine) as session:
            entry = session.exec(
                select(StockEntry).where(
                    StockEntry.branch_id == branch_id, StockEntry.product_id == product_id
                )
            ).first() or StockEntry(branch_id=branch_id, product_id=product_id, quantity=0)
            entry.quantity += quantity
            session.add(entry)
            session.add(
                InventoryMovement(
                    branch_id=branch_id,
                    product_id=product_id,
                    quantity_delta=quantity,
                    reason=MovementReason.RECEIPT,
                    reference="test",
                )
            )
            session.commit()

    def coupon(
        self,
        code: str,
        kind: CouponKind = CouponKind.PERCENT,
        value: str = "10",
        *,
        usage_limit: int | None = None,
        times_used: int = 0,
        is_active: bool = True,
        starts_in: timedelta = timedelta(days=-1),
        ends_in: timedelta | None = None,
    ) -> int:
        now = utcnow()
        return self._add(
            Coupon(
                code=code,
                kind=kind,
                value=Decimal(value),
                valid_from=now + starts_in,
                valid_until=None if ends_in is None else now + ends_in,
                usage_limit=usage_limit,
                times_used=times_used,
                is_active=is_active,
            )
        )

    def assign(self, branch_id: int, user_id: int) -> None:
        with Session(self.engine) as session:
            session.add(BranchStaff(branch_id=branch_id, user_id=user_id))
            session.commit()

    def _add(self, row) -> int:
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            return row.id

    # --- reading what is stored ------------------------------------------------------------

    def stock(self, branch_id: int, product_id: int) -> int:
        with Session(self.engine) as session:
            return session.exec(
                select(StockEntry.quantity).where(
                    StockEntry.branch_id == branch_id, StockEntry.product_id == product_id
                )
            ).one()

    def ledger(self, branch_id: int, product_id: int) -> list[tuple[int, MovementReason, str]]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(
                    InventoryMovement.quantity_delta,
                    InventoryMovement.reason,
                    InventoryMovement.reference,
                )
                .where(
                    InventoryMovement.branch_id == branch_id,
                    InventoryMovement.product_id == product_id,
                )
                .order_by(InventoryMovement.id)
            )
            return [tuple(row) for row in rows]

    def times_used(self, coupon_id: int) -> int:
        with Session(self.engine) as session:
            return session.get(Coupon, coupon_id).times_used

    def count(self, model) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.count()).select_from(model)).one()

    def orders(self) -> int:
        return self.count(Order)

    def order_items(self) -> int:
        return self.count(OrderItem)


@pytest.fixture
def shop(database_url) -> Iterator[Shop]:  # noqa: F811
    with api_client(database_url) as client:
        yield Shop(client, client.app.state.engine)
