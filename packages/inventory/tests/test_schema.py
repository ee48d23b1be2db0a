import pytest
import sqlalchemy as sa

from tecnorev.catalog.models import Product
from tecnorev.inventory.models import Branch, InventoryMovement, MovementReason, StockEntry
from tecnorev.testing.core import assert_module_migrates, migrated_session


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("inventory", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "inventory@head") as session:
        branch = Branch(code="CEN", name="Centre")
        product = Product(sku="LAMP", name="Lamp", price=10)
        session.add_all([branch, product])
        session.commit()
        session.info.update(branch_id=branch.id, product_id=product.id)
        yield session


def test_stock_can_never_go_negative(session):
    ids = session.info
    session.add(StockEntry(branch_id=ids["branch_id"], product_id=ids["product_id"], quantity=-1))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_one_stock_entry_per_branch_and_product(session):
    ids = {k: session.info[k] for k in ("branch_id", "product_id")}
    session.add(StockEntry(**ids, quantity=1))
    session.commit()
    session.add(StockEntry(**ids, quantity=2))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_movements_are_signed_non_zero_with_a_known_reason(session):
    ids = {k: session.info[k] for k in ("branch_id", "product_id")}
    session.add(InventoryMovement(**ids, quantity_delta=5, reason=MovementReason.RECEIPT))
    session.commit()
    session.add(InventoryMovement(**ids, quantity_delta=0, reason=MovementReason.ADJUSTMENT))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
    with pytest.raises(sa.exc.IntegrityError):
        session.execute(
            sa.text(
                "INSERT INTO inventory_movement (branch_id, product_id, quantity_delta, reason, "
                "reference, note, created_at) VALUES (:b, :p, 1, 'STOLEN', '', '', :now)"
            ),
            {"b": ids["branch_id"], "p": ids["product_id"], "now": "2026-01-01T00:00:00+00:00"},
        )
        session.commit()


def test_a_product_with_stock_cannot_be_deleted(session):
    ids = {k: session.info[k] for k in ("branch_id", "product_id")}
    session.add(StockEntry(**ids, quantity=1))
    session.commit()
    session.delete(session.get(Product, ids["product_id"]))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
