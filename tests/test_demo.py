"""``tecnorev demo load``: every installed module's demo data, made through the services, in
one transaction; a second run changes nothing; a registry of some modules loads theirs."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from tecnorev.auth.demo import DEMO_PASSWORD
from tecnorev.auth.models import Role, User, UserRole
from tecnorev.auth.service import authenticate
from tecnorev.catalog.models import Category, Product, ProductImage
from tecnorev.core.db import create_db_engine
from tecnorev.core.demo import load_demo
from tecnorev.core.errors import MigrationError
from tecnorev.core.registry import Registry, get_registry
from tecnorev.inventory.models import Branch, BranchStaff, InventoryMovement, StockEntry
from tecnorev.logistics.models import Shipment
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.sales.models import Coupon, CouponKind, Order, OrderStatus
from tecnorev.testing.core import migrate, run_tecnorev

MODULES = ["auth", "catalog", "inventory", "sales", "logistics", "payments"]
S = OrderStatus
# The data set as designed (see each package's demo.py).
STATUSES = {S.PENDING: 9, S.CONFIRMED: 15, S.SHIPPED: 10, S.DELIVERED: 15, S.CANCELLED: 11}
# With sales but neither logistics nor payments: orders meant to ship stay CONFIRMED.
SALES_ONLY_STATUSES = {S.PENDING: 15, S.CONFIRMED: 35, S.CANCELLED: 10}
BOOKKEEPING = {
    "alembic_version",
    "tecnorev_migration_log",
    "tecnorev_forgotten_revision",
    "tecnorev_revision_source",
    "tecnorev_replica",
    "tecnorev_backfill",
}


def subset(*names: str) -> Registry:
    return Registry.from_modules(m for m in get_registry().modules if m.name in names)


@pytest.fixture
def engine(database_url):
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def contents(engine: sa.Engine) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, sorted."""
    found = {}
    with engine.connect() as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        for name, table in metadata.tables.items():
            if name not in BOOKKEEPING:
                rows = conn.execute(sa.select(table)).all()
                found[name] = sorted(tuple(map(str, row)) for row in rows)
    return found


def count(session: Session, model: type, *where: sa.ColumnElement[bool]) -> int:
    return session.exec(select(sa.func.count()).select_from(model).where(*where)).one()


def order_statuses(session: Session) -> dict[OrderStatus, int]:
    return dict(Counter(session.exec(select(Order.status))))


def assert_stock_matches_ledger(session: Session) -> None:
    m = InventoryMovement
    sums = session.exec(
        select(m.branch_id, m.product_id, sa.func.sum(m.quantity_delta)).group_by(
            m.branch_id, m.product_id
        )
    )
    ledger = {(branch_id, product_id): total for branch_id, product_id, total in sums}
    stock = {(s.branch_id, s.product_id): s.quantity for s in session.exec(select(StockEntry))}
    assert stock
    assert stock == ledger
    assert min(stock.values()) >= 0


def assert_full_data_set(engine: sa.Engine) -> None:
    with Session(engine) as session:
        roles = dict(
            session.exec(
                select(User.email, Role.name)
                .join(UserRole, UserRole.user_id == User.id)
                .join(Role, Role.id == UserRole.role_id)
            ).all()
        )
        assert roles == {
            "manager@example.com": "manager",
            "clerk@example.com": "clerk",
            "ana@example.com": "customer",
            "bruno@example.com": "customer",
            "carla@example.com": "customer",
        }
        assert count(session, User) == 5  # the admin is created separately
        assert authenticate(session, email="ana@example.com", password=DEMO_PASSWORD)

        categories = {c.id: c for c in session.exec(select(Category))}
        assert len(categories) == 26

        def depth(category: Category) -> int:
            return 1 if category.parent_id is None else 1 + depth(categories[category.parent_id])

        assert Counter(map(depth, categories.values())) == {1: 4, 2: 7, 3: 15}
        products = list(session.exec(select(Product)))
        assert len(products) == 300
        assert len({p.sku for p in products}) == 300
        assert sum(not p.is_active for p in products) == 8
        assert all(depth(categories[p.category_id]) == 3 for p in products)
        assert all(isinstance(p.price, Decimal) and p.price > 0 for p in products)
        with_images = session.exec(
            select(sa.func.count(sa.distinct(ProductImage.product_id)))
        ).one()
        assert 60 < with_images < 200

        branches = {b.code: b.id for b in session.exec(select(Branch))}
        assert set(branches) == {"CENTRO", "NORTE", "SUR"}
        clerk_id = session.exec(select(User.id).where(User.email == "clerk@example.com")).one()
        assert session.exec(select(BranchStaff.branch_id)).all() == [branches["CENTRO"]]
        assert session.exec(select(BranchStaff.user_id)).all() == [clerk_id]
        assert_stock_matches_ledger(session)

        coupons = {c.code: c for c in session.exec(select(Coupon))}
        assert set(coupons) == {"WELCOME10", "FIXED5", "SUMMER15", "LAUNCH20"}
        assert (coupons["WELCOME10"].kind, coupons["WELCOME10"].value) == (
            CouponKind.PERCENT,
            Decimal("10.00"),
        )
        assert (coupons["FIXED5"].kind, coupons["FIXED5"].value) == (
            CouponKind.FIXED,
            Decimal("5.00"),
        )
        assert coupons["SUMMER15"].valid_until < datetime.now(UTC)  # expired
        assert coupons["LAUNCH20"].times_used == coupons["LAUNCH20"].usage_limit == 3
        assert coupons["WELCOME10"].times_used >= 1

        assert order_statuses(session) == STATUSES
        orders = {o.id: o for o in session.exec(select(Order))}
        shipments = list(session.exec(select(Shipment)))
        assert len(shipments) == STATUSES[S.SHIPPED] + STATUSES[S.DELIVERED]
        for shipment in shipments:
            assert shipment.status.value == orders[shipment.order_id].status.value
        assert {s.order_id for s in shipments} == {
            o.id for o in orders.values() if o.status in (S.SHIPPED, S.DELIVERED)
        }

        payments = list(session.exec(select(Payment)))
        assert len(payments) == 28
        refunded = [p for p in payments if p.status is PaymentStatus.REFUNDED]
        assert len(refunded) == 1
        assert orders[refunded[0].order_id].status is S.CANCELLED
        paid: Counter[int] = Counter()
        for payment in payments:
            if payment.status is PaymentStatus.SUCCEEDED:
                paid[payment.order_id] += payment.amount
        assert all(paid[i] <= orders[i].total for i in paid)
        assert all(paid[o.id] == o.total for o in orders.values() if o.status is S.DELIVERED)
        half_paid = [o for o in orders.values() if o.status is S.PENDING and paid[o.id]]
        assert len(half_paid) == 2


def test_demo_load_makes_the_data_set_and_a_second_run_changes_nothing(database_url, engine):
    migrate(database_url)

    summaries = dict(load_demo(engine=engine))

    assert list(summaries) == MODULES
    assert DEMO_PASSWORD in summaries["auth"]
    assert_full_data_set(engine)
    before = contents(engine)
    assert len(before["product"]) == 300

    result = run_tecnorev("demo", "load", url=database_url)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == MODULES
    assert all("already there" in line for line in lines), result.stdout
    assert DEMO_PASSWORD not in result.stdout
    assert contents(engine) == before


def test_a_registry_of_some_modules_loads_theirs_and_the_rest_completes_it(database_url, engine):
    # the database has only what the subset needs (catalog@head alone does not bring auth to
    # its head: catalog depends on an earlier auth revision)
    migrate(database_url, "auth@head")
    migrate(database_url, "catalog@head")

    summaries = dict(load_demo(engine=engine, registry=subset("auth", "catalog")))

    assert list(summaries) == ["auth", "catalog"]
    with Session(engine) as session:
        assert count(session, User) == 5
        assert count(session, Product) == 300

    migrate(database_url)
    summaries = dict(load_demo(engine=engine, registry=subset(*MODULES[:4])))

    assert list(summaries) == MODULES[:4]
    assert "already there" in summaries["catalog"]
    with Session(engine) as session:
        assert order_statuses(session) == SALES_ONLY_STATUSES
        assert count(session, Shipment) == count(session, Payment) == 0
        assert_stock_matches_ledger(session)

    summaries = dict(load_demo(engine=engine))

    assert all("already there" in summaries[name] for name in MODULES[:4])
    assert_full_data_set(engine)  # the same data set as loading everything at once


def test_demo_load_on_a_database_without_migrations_says_what_to_do(database_url):
    if database_url.startswith("sqlite"):
        Path(sa.make_url(database_url).database).touch()  # an empty database, not none
    result = run_tecnorev("demo", "load", url=database_url)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: the database lacks migrations of auth, core, catalog")
    assert "tecnorev db upgrade heads" in result.stderr


def test_demo_load_without_a_sqlite_file_refuses_and_creates_none(tmp_path):
    missing = tmp_path / "none.db"
    result = run_tecnorev("demo", "load", url=f"sqlite:///{missing}")

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: there is no database at {missing}")
    assert not missing.exists()


def test_demo_load_on_a_partly_migrated_database_names_the_missing_modules(database_url, engine):
    migrate(database_url, "auth@head")
    migrate(database_url, "catalog@head")

    with pytest.raises(MigrationError, match="lacks migrations of ") as refused:
        list(load_demo(engine=engine))

    missing = str(refused.value).split("migrations of ")[1].split(";")[0].split(", ")
    assert set(missing) == {"core", "inventory", "sales", "logistics", "payments"}
    with Session(engine) as session:
        assert count(session, User) == 0  # nothing was stored
