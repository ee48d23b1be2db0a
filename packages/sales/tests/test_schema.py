from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tecnorev.auth.models import User
from tecnorev.catalog.models import Product
from tecnorev.inventory.models import Branch
from tecnorev.sales.models import Coupon, CouponKind, Order, OrderItem, OrderStatus
from tecnorev.testing.core import assert_module_migrates, migrated_session


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("sales", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "sales@head") as session:
        customer = User(email="c@example.com", hashed_password="h")
        branch = Branch(code="CEN", name="Centre")
        product = Product(sku="LAMP", name="Lamp", price=Decimal("19.90"))
        session.add_all([customer, branch, product])
        session.commit()
        session.info.update(customer_id=customer.id, branch_id=branch.id, product_id=product.id)
        yield session


def order(session, **kw) -> Order:
    return Order(customer_id=session.info["customer_id"], branch_id=session.info["branch_id"], **kw)


def test_an_order_with_items_round_trips_status_and_money(session):
    o = order(session, subtotal=Decimal("39.80"), total=Decimal("39.80"))
    session.add(o)
    session.commit()
    session.add(
        OrderItem(
            order_id=o.id,
            product_id=session.info["product_id"],
            quantity=2,
            unit_price=Decimal("19.90"),
            line_total=Decimal("39.80"),
        )
    )
    o.status = OrderStatus.CONFIRMED
    session.commit()
    session.expire_all()
    stored = session.get(Order, o.id)
    assert stored.status is OrderStatus.CONFIRMED
    assert stored.total == Decimal("39.80")


def test_totals_must_add_up(session):
    session.add(order(session, subtotal=Decimal("10"), discount=Decimal("2"), total=Decimal("9")))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_idempotency_key_is_unique_per_customer(session):
    session.add(order(session, idempotency_key="k-1"))
    session.commit()
    session.add(order(session, idempotency_key="k-1"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_an_unknown_status_is_rejected(session):
    session.add(order(session))
    session.commit()
    with pytest.raises((sa.exc.DataError, sa.exc.IntegrityError, sa.exc.StatementError)):
        session.execute(sa.text("UPDATE \"order\" SET status = 'LOST'"))
        session.commit()


def test_coupon_rules_are_enforced_by_the_database(session):
    now = datetime.now(UTC)
    bad = [
        Coupon(code="P150", kind=CouponKind.PERCENT, value=Decimal("150"), valid_from=now),
        Coupon(code="NEG", kind=CouponKind.FIXED, value=Decimal("-5"), valid_from=now),
        Coupon(
            code="WIN",
            kind=CouponKind.FIXED,
            value=Decimal("5"),
            valid_from=now,
            valid_until=now - timedelta(days=1),
        ),
        Coupon(
            code="OVER",
            kind=CouponKind.FIXED,
            value=Decimal("5"),
            valid_from=now,
            usage_limit=1,
            times_used=2,
        ),
    ]
    for coupon in bad:
        session.add(coupon)
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
        session.rollback()
    session.add(
        Coupon(
            code="TEN",
            kind=CouponKind.PERCENT,
            value=Decimal("10"),
            valid_from=now,
            usage_limit=100,
        )
    )
    session.commit()
