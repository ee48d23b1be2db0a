from decimal import Decimal

import pytest
import sqlalchemy as sa

from tecnorev.auth.models import User
from tecnorev.inventory.models import Branch
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.sales.models import Order
from tecnorev.testing.core import assert_module_migrates, migrated_session


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("payments", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "payments@head") as session:
        customer = User(email="c@example.com", hashed_password="h")
        branch = Branch(code="CEN", name="Centre")
        session.add_all([customer, branch])
        session.commit()
        o = Order(customer_id=customer.id, branch_id=branch.id)
        session.add(o)
        session.commit()
        session.info["order_id"] = o.id
        yield session


def test_amounts_are_positive_exact_decimals(session):
    payment = Payment(
        order_id=session.info["order_id"],
        amount=Decimal("12.34"),
        provider="card",
        provider_reference="ch_1",
    )
    session.add(payment)
    session.commit()
    session.expire_all()
    stored = session.get(Payment, payment.id)
    assert stored.amount == Decimal("12.34") and stored.status is PaymentStatus.PENDING
    session.add(
        Payment(
            order_id=session.info["order_id"],
            amount=Decimal("0"),
            provider="card",
            provider_reference="ch_2",
        )
    )
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_a_provider_reference_is_recorded_once(session):
    for _ in range(2):
        session.add(
            Payment(
                order_id=session.info["order_id"],
                amount=Decimal("1"),
                provider="card",
                provider_reference="ch_dup",
            )
        )
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
