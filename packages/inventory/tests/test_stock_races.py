"""Stock under real concurrency (PostgreSQL): threads released together by a barrier, each with
its own connection, race for the same rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.core.db import create_db_engine
from tecnorev.inventory import service
from tecnorev.inventory.errors import InsufficientStock
from tecnorev.inventory.models import MovementReason
from tecnorev.testing.core import migrate, run_together
from tecnorev.testing.inventory import (
    LEDGER_MISMATCHES,
    add_branch,
    add_products,
    assert_ledger_matches,
    count_rows,
    stock_of,
)

pytestmark = pytest.mark.postgres

THREADS = 50

# Holding each row lock a little longer before the next statement turns an occasional
# deadlock between opposite lock orders into a near-certain one.
SLOW_STOCK_UPDATES = """
CREATE FUNCTION slow_stock_update() RETURNS trigger AS $$
BEGIN PERFORM pg_sleep(0.02); RETURN NEW; END $$ LANGUAGE plpgsql;
CREATE TRIGGER slow_stock_update BEFORE UPDATE ON stock_entry
FOR EACH ROW EXECUTE FUNCTION slow_stock_update();
"""


@pytest.fixture
def pg(postgres_url: str) -> Iterator[SimpleNamespace]:
    migrate(postgres_url)
    engine = create_db_engine(postgres_url, pool_size=THREADS + 2, max_overflow=0)
    north, south = add_branch(engine, "NORTH"), add_branch(engine, "SOUTH")
    lamp, desk = add_products(engine, "lamp", "desk")
    try:
        yield SimpleNamespace(engine=engine, north=north, south=south, lamp=lamp, desk=desk)
    finally:
        engine.dispose()


def receive(pg: SimpleNamespace, branch_id: int, quantities: dict[int, int]) -> None:
    with Session(pg.engine) as session:
        service.receive_stock(
            session, branch_id=branch_id, quantities=quantities, reference="R", author_id=None
        )
        session.commit()


def race(engine: sa.Engine, work: Callable[[Session, int], bool], threads: int) -> list[bool]:
    """Run ``work(session, i)`` in ``threads`` threads, each on its own connected session,
    all released at once; commit when it returns True, roll back when it returns False."""

    def run(i: int, start: Callable[[], object]) -> bool:
        with Session(engine) as session:
            session.connection()  # connect before the start line, so only the work races
            start()
            ok = work(session, i)
            if ok:
                session.commit()
            else:
                session.rollback()
            return ok

    return run_together(threads, run)


def test_concurrent_withdrawals_never_oversell(pg):
    receive(pg, pg.north, {pg.lamp: 10})

    def withdraw_one(session: Session, i: int) -> bool:
        try:
            service.withdraw_stock(
                session,
                branch_id=pg.north,
                quantities={pg.lamp: 1},
                reason=MovementReason.SALE,
                reference=f"order:{i}",
                author_id=None,
            )
        except InsufficientStock:
            return False
        return True

    results = race(pg.engine, withdraw_one, THREADS)
    assert results.count(True) == 10
    assert stock_of(pg.engine, pg.north, pg.lamp) == 0
    assert count_rows(pg.engine, "inventory_movement") == 1 + 10
    assert_ledger_matches(pg.engine)


def naive_withdraw_one(session: Session, branch_id: int, product_id: int) -> bool:
    """Read, check, then write the new value: what the conditional UPDATE replaces."""
    key = {"b": branch_id, "p": product_id}
    current = session.execute(
        sa.text("SELECT quantity FROM stock_entry WHERE branch_id = :b AND product_id = :p"), key
    ).scalar_one()
    if current < 1:
        return False
    session.execute(sa.text("SELECT pg_sleep(0.01)"))  # the window between read and write
    session.execute(
        sa.text("UPDATE stock_entry SET quantity = :new WHERE branch_id = :b AND product_id = :p"),
        {**key, "new": current - 1},
    )
    session.execute(
        sa.text(
            "INSERT INTO inventory_movement (branch_id, product_id, quantity_delta, reason, "
            "reference, note, created_at) VALUES (:b, :p, -1, 'SALE', 'naive', '', now())"
        ),
        key,
    )
    return True


def test_the_race_is_real_a_naive_read_then_write_oversells(pg):
    receive(pg, pg.north, {pg.lamp: 10})
    results = race(
        pg.engine, lambda session, _i: naive_withdraw_one(session, pg.north, pg.lamp), THREADS
    )
    sold = results.count(True)
    left = stock_of(pg.engine, pg.north, pg.lamp)
    # more sold than there was, and/or updates lost: stock no longer matches what was sold
    assert sold > 10 or left != 10 - sold
    with pg.engine.connect() as conn:
        assert conn.execute(LEDGER_MISMATCHES).all() != []


def _take_in_given_order(session: Session, branch_id: int, quantities: dict[int, int]) -> None:
    # the stock primitive without its sorting: rows locked in whatever order the caller gave
    service._take(session, branch_id, list(quantities.items()), author_id=None)


def _opposite_order_rounds(
    pg: SimpleNamespace,
    withdraw: Callable[[Session, dict[int, int]], None],
    *,
    rounds: int,
    keep: bool,
) -> int:
    """Two threads withdraw the same two products, listed in opposite orders; returns how
    many withdrawals ended in a deadlock.  ``keep``: commit the ones that went through."""
    orders = [{pg.lamp: 1, pg.desk: 1}, {pg.desk: 1, pg.lamp: 1}]
    deadlocks = 0

    def work(session: Session, i: int) -> bool:
        nonlocal deadlocks
        session.execute(sa.text("SET LOCAL deadlock_timeout = '50ms'"))
        try:
            withdraw(session, orders[i])
        except sa.exc.OperationalError as exc:
            assert getattr(exc.orig, "pgcode", None) == "40P01", exc
            deadlocks += 1
            return False
        return keep

    for _ in range(rounds):
        race(pg.engine, work, 2)
    return deadlocks


def test_opposite_orders_never_deadlock(pg):
    receive(pg, pg.north, {pg.lamp: 500, pg.desk: 500})
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(SLOW_STOCK_UPDATES)

    # the test can see a deadlock: without sorting, opposite orders deadlock
    unsorted = _opposite_order_rounds(
        pg, lambda session, q: _take_in_given_order(session, pg.north, q), rounds=5, keep=False
    )
    assert unsorted > 0

    def withdraw(session: Session, quantities: dict[int, int]) -> None:
        service.withdraw_stock(
            session,
            branch_id=pg.north,
            quantities=quantities,
            reason=MovementReason.SALE,
            reference="order",
            author_id=None,
        )

    assert _opposite_order_rounds(pg, withdraw, rounds=50, keep=True) == 0
    assert stock_of(pg.engine, pg.north, pg.lamp) == stock_of(pg.engine, pg.north, pg.desk) == 400
    assert_ledger_matches(pg.engine)


def test_opposite_transfers_never_deadlock(pg):
    receive(pg, pg.north, {pg.lamp: 100, pg.desk: 100})
    receive(pg, pg.south, {pg.lamp: 100, pg.desk: 100})
    with pg.engine.begin() as conn:
        conn.exec_driver_sql(SLOW_STOCK_UPDATES)
    routes = [(pg.north, pg.south), (pg.south, pg.north)]

    def work(session: Session, i: int) -> bool:
        session.execute(sa.text("SET LOCAL deadlock_timeout = '50ms'"))
        source, destination = routes[i]
        service.transfer_stock(
            session,
            from_branch_id=source,
            to_branch_id=destination,
            quantities={pg.lamp: 1, pg.desk: 2},
            reference="TR",
            author_id=None,
        )
        return True

    for _ in range(10):
        assert race(pg.engine, work, 2) == [True, True]
    assert stock_of(pg.engine, pg.north, pg.desk) == stock_of(pg.engine, pg.south, pg.desk) == 100
    assert_ledger_matches(pg.engine)
