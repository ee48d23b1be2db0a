from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tecnorev.auth.models import User
from tecnorev.inventory.models import Branch
from tecnorev.logistics.models import Shipment, ShipmentStatus
from tecnorev.sales.models import Order
from tecnorev.testing.core import assert_module_migrates, migrated_session


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("logistics", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "logistics@head") as session:
        customer = User(email="c@example.com", hashed_password="h")
        branch = Branch(code="CEN", name="Centre")
        session.add_all([customer, branch])
        session.commit()
        o = Order(customer_id=customer.id, branch_id=branch.id)
        session.add(o)
        session.commit()
        session.info["order_id"] = o.id
        yield session


def test_tracking_numbers_are_unique_per_carrier(session):
    oid = session.info["order_id"]
    session.add_all(
        [
            Shipment(order_id=oid, carrier="DHL", tracking_number="1"),
            Shipment(order_id=oid, carrier="UPS", tracking_number="1"),
        ]
    )
    session.commit()
    session.add(Shipment(order_id=oid, carrier="DHL", tracking_number="1"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_delivery_cannot_precede_shipping(session):
    now = datetime.now(UTC)
    session.add(
        Shipment(
            order_id=session.info["order_id"],
            carrier="DHL",
            tracking_number="2",
            status=ShipmentStatus.DELIVERED,
            shipped_at=now,
            delivered_at=now - timedelta(hours=1),
        )
    )
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_an_order_with_a_shipment_cannot_be_deleted(session):
    session.add(Shipment(order_id=session.info["order_id"], carrier="DHL", tracking_number="3"))
    session.commit()
    session.delete(session.get(Order, session.info["order_id"]))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
