"""``withdraw_stock`` and ``return_stock``: the stock primitives other modules (sales) call."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.core.db import create_db_engine
from tecnorev.inventory.errors import (
    BranchInactive,
    InsufficientStock,
    InvalidQuantity,
    UnknownBranch,
)
from tecnorev.inventory.models import MovementReason
from tecnorev.inventory.service import receive_stock, return_stock, transfer_stock, withdraw_stock
from tecnorev.testing.auth import create_user
from tecnorev.testing.core import migrate
from tecnorev.testing.inventory import (
    add_branch,
    add_products,
    assert_ledger_matches,
    count_rows,
    stock_of,
)

SALE = MovementReason.SALE


@pytest.fixture
def db(database_url: str) -> Iterator[SimpleNamespace]:
    migrate(database_url)
    engine = create_db_engine(database_url)
    with Session(engine) as session:
        author = create_user(session, "clerk@example.com").id
        session.commit()
    lamp, desk, chair = add_products(engine, "lamp", "desk", "chair")
    ns = SimpleNamespace(
        engine=engine,
        author=author,
        branch=add_branch(engine, "NORTH"),
        other=add_branch(engine, "SOUTH"),
        closed=add_branch(engine, "OLD", is_active=False),
        lamp=lamp,
        desk=desk,
        chair=chair,
    )
    with Session(engine) as session:
        receive_stock(
            session,
            branch_id=ns.branch,
            quantities={lamp: 5, desk: 2},
            reference="R-0",
            author_id=None,
        )
        session.commit()
    try:
        yield ns
        assert_ledger_matches(engine)
    finally:
        engine.dispose()


def _movements(engine: sa.Engine, reference: str) -> list[tuple]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT branch_id, product_id, quantity_delta, reason, note, created_by_id "
                "FROM inventory_movement WHERE reference = :r ORDER BY product_id"
            ),
            {"r": reference},
        ).all()


def test_withdraw_takes_stock_and_writes_negative_movements(db):
    with Session(db.engine) as session:
        withdraw_stock(
            session,
            branch_id=db.branch,
            quantities={db.desk: 2, db.lamp: 1},
            reason=SALE,
            reference="order:1",
            author_id=db.author,
            note="web order",
        )
        session.commit()
    assert (stock_of(db.engine, db.branch, db.lamp), stock_of(db.engine, db.branch, db.desk)) == (
        4,
        0,
    )
    assert _movements(db.engine, "order:1") == [
        (db.branch, db.lamp, -1, "SALE", "web order", db.author),
        (db.branch, db.desk, -2, "SALE", "web order", db.author),
    ]


def test_a_short_withdrawal_lists_every_short_line_and_takes_nothing(db):
    with Session(db.engine) as session:
        with pytest.raises(InsufficientStock) as raised:
            withdraw_stock(
                session,
                branch_id=db.branch,
                quantities={db.chair: 1, db.desk: 3, db.lamp: 5},
                reason=SALE,
                reference="order:2",
                author_id=None,
            )
        # even a caller that carries on and commits has the stock untouched
        session.commit()
    assert raised.value.code == "insufficient_stock" and raised.value.status_code == 409
    assert raised.value.details == {
        "shortages": [
            {"product_id": db.desk, "requested": 3, "available": 2},
            {"product_id": db.chair, "requested": 1, "available": 0},
        ]
    }
    assert (stock_of(db.engine, db.branch, db.lamp), stock_of(db.engine, db.branch, db.desk)) == (
        5,
        2,
    )
    assert _movements(db.engine, "order:2") == []


def test_a_withdrawal_needs_a_known_active_branch_and_positive_quantities(db):
    cases = [
        (dict(branch_id=999, quantities={db.lamp: 1}), UnknownBranch, "branch_not_found"),
        (dict(branch_id=db.closed, quantities={db.lamp: 1}), BranchInactive, "branch_inactive"),
        (dict(branch_id=db.branch, quantities={db.lamp: 0}), InvalidQuantity, "invalid_quantity"),
        (dict(branch_id=db.branch, quantities={db.lamp: -2}), InvalidQuantity, "invalid_quantity"),
    ]
    with Session(db.engine) as session:
        for kwargs, error, code in cases:
            with pytest.raises(error) as raised:
                withdraw_stock(session, **kwargs, reason=SALE, reference="x", author_id=None)
            assert raised.value.code == code
        # nothing asked, nothing done
        withdraw_stock(
            session, branch_id=db.branch, quantities={}, reason=SALE, reference="x", author_id=None
        )
        session.commit()
    assert count_rows(db.engine, "inventory_movement") == 2
    assert stock_of(db.engine, db.branch, db.lamp) == 5


def test_return_gives_stock_back_even_at_an_inactive_branch(db):
    with Session(db.engine) as session:
        withdraw_stock(
            session,
            branch_id=db.branch,
            quantities={db.lamp: 3},
            reason=SALE,
            reference="order:3",
            author_id=None,
        )
        return_stock(
            session,
            branch_id=db.branch,
            quantities={db.lamp: 3, db.chair: 1},
            reason=MovementReason.SALE_CANCELLED,
            reference="order:3",
            author_id=db.author,
        )
        return_stock(
            session,
            branch_id=db.closed,
            quantities={db.desk: 2},
            reason=MovementReason.SALE_CANCELLED,
            reference="order:4",
            author_id=db.author,
        )
        with pytest.raises(UnknownBranch):
            return_stock(
                session,
                branch_id=999,
                quantities={db.desk: 2},
                reason=MovementReason.SALE_CANCELLED,
                reference="order:5",
                author_id=None,
            )
        with pytest.raises(InvalidQuantity):
            return_stock(
                session,
                branch_id=db.branch,
                quantities={db.desk: 0},
                reason=MovementReason.SALE_CANCELLED,
                reference="order:5",
                author_id=None,
            )
        session.commit()
    assert stock_of(db.engine, db.branch, db.lamp) == 5
    assert stock_of(db.engine, db.branch, db.chair) == 1  # a row created on the way back
    assert stock_of(db.engine, db.closed, db.desk) == 2
    assert [m[2:4] for m in _movements(db.engine, "order:3")] == [
        (-3, "SALE"),
        (3, "SALE_CANCELLED"),
        (1, "SALE_CANCELLED"),
    ]


def test_a_short_transfer_undoes_its_arrival_whichever_side_went_first(db):
    # from the higher branch id to the lower: the destination is written first
    assert db.other > db.branch
    with Session(db.engine) as session:
        with pytest.raises(InsufficientStock):
            transfer_stock(
                session,
                from_branch_id=db.other,
                to_branch_id=db.branch,
                quantities={db.lamp: 1},
                reference="TR",
                author_id=None,
            )
        session.commit()
    assert stock_of(db.engine, db.branch, db.lamp) == 5
    assert _movements(db.engine, "TR") == []
