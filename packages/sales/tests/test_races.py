"""Races on PostgreSQL with real threads: each client is its own session and connection, all
released together by a barrier, each doing one unit of work (place, commit).

Each race also runs against a deliberately naive read-then-write version of the same step (read,
check in Python, write the computed value back, with a short sleep holding the window open): it
must go wrong, which proves the race is real and that the test would see it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from tecnorev.auth.models import User
from tecnorev.catalog.models import Product
from tecnorev.core.db import create_db_engine
from tecnorev.core.types import utcnow
from tecnorev.inventory.errors import InsufficientStock
from tecnorev.inventory.models import Branch, InventoryMovement, MovementReason, StockEntry
from tecnorev.sales import service
from tecnorev.sales.errors import CouponExhausted
from tecnorev.sales.models import Coupon, CouponKind, Order
from tecnorev.testing.core import migrate, run_together

pytestmark = pytest.mark.postgres

CLIENTS = 50
WINDOW = sa.text("SELECT pg_sleep(0.01)")


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def race(engine: sa.Engine, clients: int, work: Callable[[Session, int], Any]) -> list[Outcome]:
    """Run ``work(session, n)`` in ``clients`` threads at once; each commits its own session."""

    def client(n: int, start: Callable[[], object]) -> Outcome:
        with Session(engine) as session:
            session.connection()  # connected before the start, so all begin together
            start()
            try:
                value = work(session, n)
                session.commit()
                return Outcome(value=value)
            except Exception as exc:
                session.rollback()
                return Outcome(error=exc)

    return run_together(clients, client, timeout=120)


def errors(outcomes: list[Outcome]) -> Counter:
    return Counter(type(o.error).__name__ for o in outcomes if o.error is not None)


def sqlstate(error: BaseException | None) -> str | None:
    return getattr(getattr(error, "orig", None), "pgcode", None)


class Store:
    def __init__(self, url: str) -> None:
        migrate(url)
        self.engine = create_db_engine(url, pool_size=CLIENTS, max_overflow=5)
        self.branch = self._add(Branch(code="CEN", name="Centre"))
        self.customers = [
            self._add(User(email=f"c{n}@example.com", hashed_password="-")) for n in range(CLIENTS)
        ]

    def _add(self, row) -> int:
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
            return row.id

    def product(self, sku: str, stock: int) -> int:
        product_id = self._add(Product(sku=sku, name=sku, price=Decimal("10.00")))
        with Session(self.engine) as session:
            session.add(StockEntry(branch_id=self.branch, product_id=product_id, quantity=stock))
            session.add(
                InventoryMovement(
                    branch_id=self.branch,
                    product_id=product_id,
                    quantity_delta=stock,
                    reason=MovementReason.RECEIPT,
                )
            )
            session.commit()
        return product_id

    def coupon(self, code: str, limit: int) -> int:
        return self._add(
            Coupon(
                code=code,
                kind=CouponKind.PERCENT,
                value=Decimal("10"),
                valid_from=utcnow(),
                usage_limit=limit,
            )
        )

    def stock_and_ledger(self, product_id: int) -> tuple[int, int]:
        with Session(self.engine) as session:
            stock = session.exec(
                select(StockEntry.quantity).where(StockEntry.product_id == product_id)
            ).one()
            ledger = session.exec(
                select(func.sum(InventoryMovement.quantity_delta)).where(
                    InventoryMovement.product_id == product_id
                )
            ).one()
            return stock, ledger

    def times_used(self, coupon_id: int) -> int:
        with Session(self.engine) as session:
            return session.get(Coupon, coupon_id).times_used

    def orders(self, **where) -> int:
        with Session(self.engine) as session:
            statement = select(func.count()).select_from(Order)
            for column, value in where.items():
                statement = statement.where(getattr(Order, column) == value)
            return session.exec(statement).one()


@pytest.fixture
def store(postgres_url):
    store = Store(postgres_url)
    yield store
    store.engine.dispose()


# --- the naive variants: read, decide in Python, write the computed value back ----------------


def naive_withdraw(session: Session, branch_id: int, product_id: int, quantity: int) -> None:
    where = {"b": branch_id, "p": product_id}
    available = session.execute(
        sa.text("SELECT quantity FROM stock_entry WHERE branch_id = :b AND product_id = :p"),
        where,
    ).scalar_one()
    session.execute(WINDOW)
    if available < quantity:
        raise InsufficientStock("not enough stock")
    session.execute(
        sa.text("UPDATE stock_entry SET quantity = :new WHERE branch_id = :b AND product_id = :p"),
        {**where, "new": available - quantity},
    )
    session.execute(
        sa.insert(InventoryMovement.__table__).values(
            branch_id=branch_id,
            product_id=product_id,
            quantity_delta=-quantity,
            reason=MovementReason.SALE,
            reference="naive",
            note="",
            created_at=utcnow(),
        )
    )


def naive_use_coupon(session: Session, coupon_id: int) -> None:
    used, limit = session.execute(
        sa.text("SELECT times_used, usage_limit FROM coupon WHERE id = :id"), {"id": coupon_id}
    ).one()
    session.execute(WINDOW)
    if used >= limit:
        raise CouponExhausted("used up")
    session.execute(
        sa.text("UPDATE coupon SET times_used = :new WHERE id = :id"),
        {"id": coupon_id, "new": used + 1},
    )


def naive_take_in_given_order(session: Session, branch_id: int, product_ids: list[int]) -> None:
    for product_id in product_ids:  # no common lock order
        session.execute(
            sa.text(
                "SELECT quantity FROM stock_entry WHERE branch_id = :b AND product_id = :p "
                "FOR UPDATE"
            ),
            {"b": branch_id, "p": product_id},
        )
        session.execute(WINDOW)
        session.execute(
            sa.text(
                "UPDATE stock_entry SET quantity = quantity - 1 "
                "WHERE branch_id = :b AND product_id = :p"
            ),
            {"b": branch_id, "p": product_id},
        )


def naive_place_once(session: Session, customer_id: int, branch_id: int, key: str) -> int:
    found = session.execute(
        sa.text('SELECT id FROM "order" WHERE customer_id = :c AND idempotency_key = :k'),
        {"c": customer_id, "k": key},
    ).scalar_one_or_none()
    session.execute(WINDOW)
    if found is not None:
        return found
    now = utcnow()
    return session.execute(
        sa.insert(Order.__table__)
        .values(
            customer_id=customer_id,
            branch_id=branch_id,
            status="PENDING",
            subtotal=0,
            discount=0,
            total=0,
            idempotency_key=key,
            created_at=now,
            updated_at=now,
        )
        .returning(Order.__table__.c.id)
    ).scalar_one()


# --- the races ---------------------------------------------------------------------------------


def test_fifty_clients_racing_for_the_last_ten_units_buy_exactly_ten(store):
    product = store.product("LAST", stock=10)

    def buy(session, n):
        return service.place_order(
            session, customer_id=store.customers[n], branch_id=store.branch, items=[(product, 1)]
        ).order.id

    outcomes = race(store.engine, CLIENTS, buy)
    assert errors(outcomes) == Counter({"InsufficientStock": CLIENTS - 10})
    assert store.stock_and_ledger(product) == (0, 0)
    assert store.orders() == 10


def test_the_naive_read_then_write_oversells(store):
    product = store.product("LAST", stock=10)

    def buy(session, n):
        naive_withdraw(session, store.branch, product, 1)

    outcomes = race(store.engine, CLIENTS, buy)
    sold = sum(o.error is None for o in outcomes)
    stock, ledger = store.stock_and_ledger(product)
    assert sold > 10, "the naive variant did not oversell: the race was not exercised"
    assert ledger == 10 - sold < 0
    assert stock != ledger


def test_fifty_clients_racing_for_a_coupon_limited_to_five_get_five(store):
    product = store.product("PLENTY", stock=1000)
    coupon = store.coupon("FIVE", limit=5)

    def buy(session, n):
        return service.place_order(
            session,
            customer_id=store.customers[n],
            branch_id=store.branch,
            items=[(product, 1)],
            coupon_code="five",
        ).order.id

    outcomes = race(store.engine, CLIENTS, buy)
    assert errors(outcomes) == Counter({"CouponExhausted": CLIENTS - 5})
    assert store.times_used(coupon) == 5
    assert store.orders(coupon_id=coupon) == 5
    assert store.stock_and_ledger(product) == (995, 995)


def test_the_naive_read_then_write_over_applies_a_coupon(store):
    coupon = store.coupon("FIVE", limit=5)
    outcomes = race(store.engine, CLIENTS, lambda session, n: naive_use_coupon(session, coupon))
    applied = sum(o.error is None for o in outcomes)
    assert applied > 5, "the naive variant stayed within the limit: the race was not exercised"
    assert store.times_used(coupon) < applied


def test_orders_taking_two_products_in_opposite_order_never_deadlock(store):
    a = store.product("A", stock=10_000)
    b = store.product("B", stock=10_000)
    clients, rounds = 20, 10

    def buy(session, n):
        lines = [(a, 1), (b, 1)] if n % 2 else [(b, 1), (a, 1)]
        return service.place_order(
            session, customer_id=store.customers[n], branch_id=store.branch, items=lines
        ).order.id

    for _ in range(rounds):
        outcomes = race(store.engine, clients, buy)
        assert [sqlstate(o.error) for o in outcomes if o.error] == []
    sold = clients * rounds
    assert store.stock_and_ledger(a) == (10_000 - sold, 10_000 - sold)
    assert store.stock_and_ledger(b) == (10_000 - sold, 10_000 - sold)
    assert store.orders() == sold


def test_the_naive_variant_locking_in_item_order_deadlocks(store):
    a = store.product("A", stock=10_000)
    b = store.product("B", stock=10_000)

    def take(session, n):
        naive_take_in_given_order(session, store.branch, [a, b] if n % 2 else [b, a])

    deadlocks = 0
    for _ in range(5):
        outcomes = race(store.engine, 4, take)
        deadlocks += sum(sqlstate(o.error) == "40P01" for o in outcomes)
        if deadlocks:
            break
    assert deadlocks, "no deadlock without a common lock order: the race was not exercised"


def test_twenty_placements_with_one_key_create_one_order(store):
    product = store.product("LAMP", stock=100)
    customer = store.customers[0]

    def place(session, n):
        placed = service.place_order(
            session,
            customer_id=customer,
            branch_id=store.branch,
            items=[(product, 2)],
            idempotency_key="checkout-1",
        )
        return placed.order.id, placed.replayed

    outcomes = race(store.engine, 20, place)
    assert errors(outcomes) == Counter()
    ids = {o.value[0] for o in outcomes}
    assert len(ids) == 1
    assert sorted(o.value[1] for o in outcomes) == [False] + [True] * 19
    assert store.orders() == 1
    assert store.stock_and_ledger(product) == (98, 98)


def test_the_naive_check_then_insert_fails_callers_of_one_key(store):
    customer = store.customers[0]
    outcomes = race(
        store.engine,
        20,
        lambda session, n: naive_place_once(session, customer, store.branch, "checkout-1"),
    )
    failed = [o for o in outcomes if o.error is not None]
    assert failed, "every caller got the order: the race was not exercised"
    assert {sqlstate(o.error) for o in failed} == {"23505"}
    assert store.orders() == 1
