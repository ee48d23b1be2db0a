from decimal import Decimal

import pytest
import sqlalchemy as sa

from tecnorev.catalog.models import Category, Product, ProductImage
from tecnorev.testing.core import assert_module_migrates, migrated_session


def test_branch_migrates_and_reverts(database_url):
    assert_module_migrates("catalog", database_url)


@pytest.fixture
def session(database_url):
    with migrated_session(database_url, "catalog@head") as session:
        yield session


def test_prices_are_exact_decimals(session):
    product = Product(sku="MUG-1", name="Mug", price=Decimal("0.10") + Decimal("0.20"))
    session.add(product)
    session.commit()
    session.expire_all()
    assert session.get(Product, product.id).price == Decimal("0.30")


def test_negative_price_is_rejected_by_the_database(session):
    session.add(Product(sku="BAD-1", name="Bad", price=Decimal("-1.00")))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_sku_and_slug_are_unique(session):
    session.add_all([Category(name="A", slug="a"), Product(sku="S", name="x", price=1)])
    session.commit()
    session.add(Category(name="A again", slug="a"))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
    session.add(Product(sku="S", name="y", price=1))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()


def test_images_are_ordered_and_go_with_their_product(session):
    product = Product(sku="LAMP", name="Lamp", price=Decimal("10"))
    session.add(product)
    session.commit()
    session.add_all(
        [ProductImage(product_id=product.id, url=f"https://img/{i}", position=i) for i in range(2)]
    )
    session.commit()
    session.add(ProductImage(product_id=product.id, url="https://img/dup", position=1))
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
    session.rollback()
    session.delete(product)
    session.commit()
    assert session.exec(sa.select(sa.func.count()).select_from(ProductImage)).one()[0] == 0


def test_a_category_with_children_cannot_be_deleted(session):
    parent = Category(name="Home", slug="home")
    session.add(parent)
    session.commit()
    session.add(Category(name="Lamps", slug="lamps", parent_id=parent.id))
    session.commit()
    session.delete(parent)
    with pytest.raises(sa.exc.IntegrityError):
        session.commit()
