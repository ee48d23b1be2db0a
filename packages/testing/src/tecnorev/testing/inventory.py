"""Helpers for tests of stock, here and in modules that move stock (sales): rows to start
from, and the ledger invariant to check after every scenario."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.catalog.models import Product
from tecnorev.inventory.models import Branch

# Rows where a branch's stock of a product differs from the sum of its ledger movements
# (either side may be missing: movements without a stock row, or a stock row without any).
LEDGER_MISMATCHES = sa.text(
    """
    SELECT COALESCE(s.branch_id, m.branch_id) AS branch_id,
           COALESCE(s.product_id, m.product_id) AS product_id,
           COALESCE(s.quantity, 0) AS stock, COALESCE(m.total, 0) AS ledger
    FROM stock_entry s
    FULL OUTER JOIN (
        SELECT branch_id, product_id, SUM(quantity_delta) AS total
        FROM inventory_movement GROUP BY branch_id, product_id
    ) m ON m.branch_id = s.branch_id AND m.product_id = s.product_id
    WHERE COALESCE(s.quantity, 0) <> COALESCE(m.total, 0)
    """
)


def assert_ledger_matches(engine: sa.Engine) -> None:
    """Every stock row equals the sum of its movements."""
    with engine.connect() as conn:
        mismatches = [dict(row._mapping) for row in conn.execute(LEDGER_MISMATCHES)]
    assert mismatches == [], f"stock differs from the ledger: {mismatches}"


def add_branch(engine: sa.Engine, code: str, *, is_active: bool = True) -> int:
    with Session(engine) as session:
        branch = Branch(code=code, name=f"Branch {code}", is_active=is_active)
        session.add(branch)
        session.commit()
        return _stored(branch.id)


def add_products(engine: sa.Engine, *skus: str) -> list[int]:
    """Catalog rows inserted directly, for tests that need products but not the catalog."""
    with Session(engine) as session:
        products = [Product(sku=sku, name=sku.title(), price=Decimal(10)) for sku in skus]
        session.add_all(products)
        session.commit()
        return [_stored(product.id) for product in products]


def _stored(row_id: int | None) -> int:
    """The id of a row the database holds (set when it was committed)."""
    assert row_id is not None
    return row_id


def stock_of(engine: sa.Engine, branch_id: int, product_id: int) -> int | None:
    """The stored quantity, or ``None`` when the branch never held the product."""
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT quantity FROM stock_entry WHERE branch_id = :b AND product_id = :p"),
            {"b": branch_id, "p": product_id},
        ).scalar_one_or_none()


def count_rows(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()
