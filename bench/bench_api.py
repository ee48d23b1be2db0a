"""The HTTP API under load, next to the database floor: the same SQL run directly by pgbench.

One run creates a throwaway PostgreSQL database, migrates it with ``tecnorev db upgrade
heads``, loads a data set (categories, products with images, one branch stocked for every
product, customer users with a live login each), then for each worker count starts the real
server (``tecnorev serve --workers N``), warms it up and measures each scenario with C
concurrent keep-alive clients for a fixed time:

* ``product list``: ``GET /api/v1/catalog/products?limit=50`` from a random cursor, anonymous;
* ``product page``: ``GET /api/v1/catalog/products/{id}``, each active product in turn with
  its images, anonymous (scenario ``product``);
* ``order placement``: ``POST /api/v1/sales/orders``, three distinct products, one unit each,
  as a random customer;
* ``listings``: every collection route (``COLLECTIONS``), 50-row pages under its default sort
  from a random cursor (up to 1,000 page starts, each leaving a full page), the public ones
  anonymously and every one as an admin (the seeded role, a bearer token minted like a
  login's).  The anonymous product list is the ``product list`` scenario's measurement when
  both run.  For full pages the run adds, in bulk with Core statements: 2,000 users, coupons,
  orders of 3 items (each with a shipment and a payment), 4,000 stock movements, 450
  categories and 200 branches (``--listing-rows``).  Next to them, in the same run, the
  reference: full-stack-fastapi-template's 50-item list as its superuser (``GET
  /api/v1/items/?limit=50``, 1 worker, same load generator, clients and duration), served from
  the checkout that ``TECNOREV_BENCH_TEMPLATE`` names (``bench/reference.py``); without it the
  run says the reference was not measured.  Each listing's requests/s is printed as a multiple
  of the template's (the goal: 3x, judged with one worker like it) and its p99 against 50 ms.

The floor is the same transaction run by ``pgbench -M simple`` (psycopg2 does not prepare
statements either) with the scripts in ``bench/sql/``: statement for statement what the
endpoint sends inside its transaction (captured from the server log with
``log_statement = all``).  ``place_order_core.sql`` is only the order's writes (three stock
updates, the order, its items, its movements): a second, higher floor.  Figures are printed,
never asserted; the database is dropped at the end.

Two more scenarios show what one contested row and a burst of logins do to the rest of the
server.  They run after the others, with ``tecnorev demo load``'s data added, and start a
fresh server for each measurement; while each runs, a probe GETs the product list (and
``/health``) every 50 ms, next to the same probe on the idle server just before:

* ``lock storm``: requests released all at once, all after one row lock: the staff's
  confirm and cancel and the customer's cancel of one PENDING order; the exchange of one
  refresh token; orders for the last 10 units of one product (half as many requests).
  Printed: the statuses, the 5xx, the answers slower than 5 s, the requests never answered,
  the slowest answer, the probe's latency, and whether the server still answers afterwards;
* ``login flood``: anonymous clients POST logins (``/api/v1/auth/token``) for a fixed time,
  wrong passwords for one account and unknown accounts; printed: the statuses, the workers'
  resident memory before, at its peak and after, and the probe's latency.

Every request of these two has a timeout and every measurement a time limit, and a server
still running a few seconds after SIGTERM is killed: a frozen server ends the measurement
and shows in its figures, it does not hang the run.

    python bench/bench_api.py                          # 1 and 2 workers, 32 clients, 10 s
    python bench/bench_api.py --duration 20 --workers 2 --clients 64
    python bench/bench_api.py --profile /tmp/profiles  # also sample one worker with py-spy
    python bench/bench_api.py --wait-idle 120          # shared machine: wait for idle CPU
    python bench/bench_api.py --load-generator python --no-floor --log-level info
    python bench/bench_api.py --scenarios lock-storm,login-flood --storm-requests 400
    TECNOREV_BENCH_TEMPLATE=~/src/full-stack-fastapi-template \
        python bench/bench_api.py --scenarios list,listings,orders --workers 1

Every measurement also reports the CPU time of the server, of the database's PostgreSQL
backends, of the load generator and of the rest of the machine (sampled from /proc), and with
several workers how the client connections were split between them.

The database server is PostgreSQL at TEST_DATABASE_URL (default: postgres on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SQL = HERE / "sql"
BIN = Path(sys.executable).parent
sys.path.insert(0, str(HERE))

import load as loadgen  # noqa: E402
import pressure  # noqa: E402
import reference  # noqa: E402

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlmodel import Session

    from tecnorev.auth.models import RefreshToken
    from tecnorev.auth.service import IssuedTokens
    from tecnorev.core.listing import Listing

DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# The server and this process sign and check tokens with the same key.
SECRET_KEY = "bench-signing-key-for-throwaway-databases-only"
STOCK = 1_000_000_000  # units per product: no order runs out during a run
PAGE = 50
ORDER_LINES = 3
GOAL_ORDER_RATIO = 0.40  # order placement at least 40% of the floor's TPS
GOAL_LIST_P99_MS = 50.0
GOAL_TEMPLATE_RATIO = 3.0  # each listing at least 3x the template's 50-item list
MAX_STARTS = 1000  # page starts (cursors) per listing at most, spread evenly
TICK = os.sysconf("SC_CLK_TCK")
# --scenarios name -> the scenario
SCENARIOS = {
    "list": "product list",
    "product": "product page",
    "listings": "listings",
    "orders": "order placement",
    "lock-storm": "lock storm",
    "login-flood": "login flood",
}


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    workers: list[int]
    clients: int
    products: int
    customers: int
    tool: str
    profile: Path | None
    wait_idle: float
    log_level: str
    floor: bool
    admin_url: str
    scenarios: list[str]  # values of SCENARIOS
    storm_requests: int
    request_timeout: float
    flood_clients: int
    flood_duration: float
    listing_rows: int
    listings: frozenset[str]  # only these listings (names); empty: all
    gzip: bool  # pages asked for gzip
    template: Path | None  # a checkout of full-stack-fastapi-template: the reference


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up each")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=64)
    parser.add_argument(
        "--load-generator",
        dest="tool",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python generator in bench/load.py",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring, sample a 1-worker server under each load with py-spy into DIR",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a shared machine, wait up to this long before each measurement for the CPU "
        "to be 85%% idle",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        help="the server's log level (default warning; info adds an access log line per request)",
    )
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="measure the HTTP API only"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--storm-requests",
        type=int,
        default=200,
        help="requests released at once in each lock storm (the last units get half)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="client timeout of each lock storm and login flood request",
    )
    parser.add_argument("--flood-clients", type=int, default=48, help="login flood clients")
    parser.add_argument("--flood-duration", type=float, default=15.0, help="seconds of login flood")
    parser.add_argument(
        "--gzip",
        action="store_true",
        help="the listings, product list and product page asked for gzip (Accept-Encoding), as "
        "browsers and most HTTP libraries ask; the template's list too",
    )
    parser.add_argument(
        "--listings",
        default="",
        metavar="NAMES",
        help="with the listings scenario, only these listings (comma-separated names: "
        f"{', '.join(c.listing for c in COLLECTIONS)}; default: all)",
    )
    parser.add_argument(
        "--listing-rows",
        type=int,
        default=2000,
        help="orders (3 items, a shipment and a payment each), coupons and users seeded for "
        "the listings; movements twice as many",
    )
    args = parser.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if not workers or min(workers) < 1:
        parser.error("--workers takes whole numbers of at least 1, e.g. 1,2")
    chosen = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown or not chosen:
        parser.error(f"--scenarios takes names from {', '.join(SCENARIOS)}; not {unknown}")
    if args.storm_requests < 2 or args.flood_clients < 1:
        parser.error("--storm-requests takes at least 2, --flood-clients at least 1")
    names = {c.listing for c in COLLECTIONS}
    listings = [name.strip() for name in args.listings.split(",") if name.strip()]
    if set(listings) - names:
        parser.error(f"--listings takes names from {', '.join(sorted(names))}")
    if args.listing_rows < 2 * PAGE:
        parser.error(f"--listing-rows takes at least {2 * PAGE}: two full pages")
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        workers=workers,
        clients=args.clients,
        products=args.products,
        customers=args.customers,
        tool=args.tool,
        profile=args.profile,
        wait_idle=args.wait_idle,
        log_level=args.log_level,
        floor=args.floor,
        admin_url=os.environ.get("TEST_DATABASE_URL", DEFAULT_ADMIN_URL),
        scenarios=[SCENARIOS[name] for name in SCENARIOS if name in chosen],
        storm_requests=args.storm_requests,
        request_timeout=args.request_timeout,
        flood_clients=args.flood_clients,
        flood_duration=args.flood_duration,
        listing_rows=args.listing_rows,
        listings=frozenset(listings),
        gzip=args.gzip,
        template=reference.checkout(),
    )


# --------------------------------------------------------------------------- the database


def _database_name(url: str) -> str:
    return urllib.parse.urlsplit(url).path.lstrip("/")


def _with_database(url: str, database: str) -> str:
    return urllib.parse.urlsplit(url)._replace(path=f"/{database}").geturl()


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    name = f"tecnorev_bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(admin_url, name)
    finally:
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
        print(f"dropped the database {name}")


def migrate(url: str) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    subprocess.run(
        [str(BIN / "tecnorev"), "db", "upgrade", "heads"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True)
class DataSet:
    branch_id: int
    first_product: int  # the active products are first_product .. first_product + active - 1
    active: int
    products: int
    categories: int
    images: int
    customers: list[int]  # user ids; each has a live login whose family id is family_id(uid)
    first_customer: int
    admin: int | None = None  # a user with the seeded admin role and a live login (listings)


def settle(url: str) -> None:
    """``VACUUM (ANALYZE)`` the loaded tables, as autovacuum would within a minute or so: every
    scenario then runs on planner statistics and a visibility map (index-only scans without heap
    fetches), whatever the wait before it."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("VACUUM (ANALYZE)"))
    finally:
        engine.dispose()


def insert_ids(session: Session, table: sa.Table, rows: list[dict[str, object]]) -> list[int]:
    """Insert ``rows`` in one statement; their ids, in the order of ``rows``."""
    import sqlalchemy as sa

    inserted = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(session.execute(inserted, rows).scalars())


def family_id(user_id: int) -> str:
    """A login family per customer, predictable so the pgbench script can name it too."""
    return f"{user_id:032d}"


def live_login(user_id: int) -> RefreshToken:
    """A login of ``user_id`` valid for a year, whose family is ``family_id(user_id)``."""
    from tecnorev.auth.models import RefreshToken
    from tecnorev.core.types import utcnow

    now = utcnow()
    return RefreshToken(
        user_id=user_id,
        token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
        family_id=family_id(user_id),
        expires_at=now.replace(year=now.year + 1),
    )


def load_data(url: str, *, products: int, customers: int) -> DataSet:
    """Categories in two levels, ``products`` products (the last 5% inactive, two images each),
    one branch holding ``STOCK`` units of every product, and customers with a live login."""
    import sqlalchemy as sa
    from sqlmodel import Session

    from tecnorev.catalog.models import Category, Product, ProductImage
    from tecnorev.core.types import utcnow
    from tecnorev.inventory.models import Branch, StockEntry
    from tecnorev.testing.auth import create_user

    rng = random.Random(20261124)
    now = utcnow()
    audit = {"created_at": now, "updated_at": now}
    engine = sa.create_engine(url)
    with Session(engine) as session:
        tops = [
            {"name": f"Department {i}", "slug": f"department-{i}", "parent_id": None, **audit}
            for i in range(1, 11)
        ]
        top_ids = list(
            session.execute(
                sa.insert(Category.__table__).returning(Category.__table__.c.id), tops
            ).scalars()
        )
        subs = [
            {"name": f"Aisle {parent}.{j}", "slug": f"aisle-{parent}-{j}", "parent_id": parent}
            for parent in top_ids
            for j in range(1, 5)
        ]
        sub_ids = list(
            session.execute(
                sa.insert(Category.__table__).returning(Category.__table__.c.id),
                [{**row, **audit} for row in subs],
            ).scalars()
        )
        active = products - products // 20
        rows = [
            {
                "sku": f"BENCH-{i:06d}",
                "name": f"Product {i} {rng.choice(['red', 'blue', 'steel', 'oak'])}",
                "description": "A product of the benchmark catalogue. " * 4,
                "price": Decimal(rng.randint(100, 50_000)) / 100,
                "is_active": i <= active,
                "category_id": rng.choice(sub_ids),
                **audit,
            }
            for i in range(1, products + 1)
        ]
        product_ids = insert_ids(session, Product.__table__, rows)
        session.execute(
            sa.insert(ProductImage.__table__),
            [
                {
                    "product_id": pid,
                    "url": f"https://img.example.com/p/{pid}/{pos}.jpg",
                    "alt_text": f"view {pos}",
                    "position": pos,
                    **audit,
                }
                for pid in product_ids
                for pos in (0, 1)
            ],
        )
        branch_id = session.execute(
            sa.insert(Branch.__table__)
            .values(code="BENCH", name="Benchmark branch", address="", is_active=True, **audit)
            .returning(Branch.__table__.c.id)
        ).scalar_one()
        session.execute(
            sa.insert(StockEntry.__table__),
            [
                {"branch_id": branch_id, "product_id": pid, "quantity": STOCK, **audit}
                for pid in product_ids
            ],
        )
        users = [
            create_user(session, f"customer{i}@bench.example.com", roles=["customer"]).id
            for i in range(1, customers + 1)
        ]
        session.add_all(live_login(uid) for uid in users)
        session.commit()
    engine.dispose()
    first_product = product_ids[0]
    if product_ids[active - 1] != first_product + active - 1:
        raise RuntimeError("product ids are not consecutive; the scripts assume they are")
    if users != list(range(users[0], users[0] + len(users))):
        raise RuntimeError("customer ids are not consecutive; the scripts assume they are")
    return DataSet(
        branch_id=branch_id,
        first_product=first_product,
        active=active,
        products=products,
        categories=len(top_ids) + len(sub_ids),
        images=2 * products,
        customers=users,
        first_customer=users[0],
    )


def access_tokens(data: DataSet) -> list[str]:
    """A fresh access token (15 minutes) for each customer's login, minted right before a
    scenario so none expires during it."""
    from tecnorev.auth.security import create_access_token

    return [create_access_token(uid, family_id(uid))[0] for uid in data.customers]


def list_paths(data: DataSet) -> list[str]:
    """One path per page start: the first page, then a cursor after every active product id
    that leaves a full page."""
    from tecnorev.catalog.listings import products

    base = f"/api/v1/catalog/products?limit={PAGE}"
    last_start = data.first_product + data.active - PAGE - 1
    return [base] + [
        f"{base}&cursor={products.encode_cursor('id', after, after)}"
        for after in range(data.first_product, last_start)
    ]


# --------------------------------------------------------------------------- the listings


@dataclass(frozen=True)
class Collection:
    """A collection route and the listing that serves it."""

    path: str  # under /api/v1
    module: str
    listing: str  # the name in tecnorev.<module>.listings
    public: bool  # measured anonymously too

    def of(self) -> Listing:
        import importlib

        listing: Listing = getattr(
            importlib.import_module(f"tecnorev.{self.module}.listings"), self.listing
        )
        return listing

    def scenario(self, anonymous: bool) -> str:
        return f"{self.path.lstrip('/')} {'anon' if anonymous else 'admin'}"


COLLECTIONS = (
    Collection("/catalog/products", "catalog", "products", public=True),
    Collection("/catalog/categories", "catalog", "categories", public=True),
    Collection("/inventory/branches", "inventory", "branches", public=True),
    Collection("/auth/users", "auth", "users", public=False),
    Collection("/inventory/stock", "inventory", "stock", public=False),
    Collection("/inventory/movements", "inventory", "movements", public=False),
    Collection("/sales/coupons", "sales", "coupons", public=False),
    Collection("/sales/orders", "sales", "orders", public=False),
    Collection("/logistics/shipments", "logistics", "shipments", public=False),
    Collection("/payments", "payments", "payments", public=False),  # formerly /payments/payments
)
# the product list scenario measures this one already: it stands for it in the listings
PRODUCT_LIST_IS = COLLECTIONS[0].scenario(anonymous=True)


def listing_scenarios(options: Options) -> list[tuple[Collection, bool]]:
    """(collection, anonymous) of each listing measurement, in order."""
    if "listings" not in options.scenarios:
        return []
    found = []
    for collection in COLLECTIONS:
        if options.listings and collection.listing not in options.listings:
            continue
        for anonymous in (True, False) if collection.public else (False,):
            if collection.scenario(anonymous) == PRODUCT_LIST_IS and (
                "product list" in options.scenarios
            ):
                continue
            found.append((collection, anonymous))
    return found


def load_listing_data(url: str, data: DataSet, rows: int) -> tuple[DataSet, dict[str, int]]:
    """What full 50-row pages of every collection need, on top of ``load_data``'s set, all
    inserted with Core statements in bulk: an admin with a live login, ``rows`` users (the
    customer role each), coupons, orders of 3 items (each with a shipment and a payment),
    ``2 x rows`` stock movements (+1/-1 in pairs: the ledger still sums to the stock), 450
    more categories and 200 more branches.  Returns the data set with its admin, and the
    rows added by table."""
    import datetime as dt

    import sqlalchemy as sa
    from sqlmodel import Session, select

    from tecnorev.auth.models import Role, User, UserRole
    from tecnorev.catalog.models import Category, Product
    from tecnorev.core.types import utcnow
    from tecnorev.inventory.models import Branch, InventoryMovement
    from tecnorev.logistics.models import Shipment
    from tecnorev.payments.models import Payment
    from tecnorev.sales.models import Coupon, Order, OrderItem
    from tecnorev.testing.auth import create_user

    rng = random.Random(20261206)
    now = utcnow()
    audit = {"created_at": now, "updated_at": now}
    added: dict[str, int] = {}
    engine = sa.create_engine(url)
    with Session(engine) as session:
        admin = create_user(session, "admin@bench.example.com", roles=["admin"]).id
        assert admin is not None
        session.add(live_login(admin))
        hashed = session.exec(select(User.hashed_password).where(User.id == admin)).one()
        user_ids = list(
            session.execute(
                sa.insert(User.__table__).returning(User.__table__.c.id),
                [
                    {
                        "email": f"user{i:05d}@bench.example.com",
                        "full_name": f"User {i}",
                        "hashed_password": hashed,
                        "is_active": True,
                        **audit,
                    }
                    for i in range(rows)
                ],
            ).scalars()
        )
        customer_role = session.exec(select(Role.id).where(Role.name == "customer")).one()
        session.execute(
            sa.insert(UserRole.__table__),
            [{"user_id": uid, "role_id": customer_role, "created_at": now} for uid in user_ids],
        )
        added["user"] = len(user_ids)
        aisles = list(
            session.exec(select(Category.id).where(Category.parent_id.is_not(None))).all()
        )
        session.execute(
            sa.insert(Category.__table__),
            [
                {
                    "name": f"Shelf {i:03d}",
                    "slug": f"shelf-{i:03d}",
                    "parent_id": aisles[i % len(aisles)],
                    **audit,
                }
                for i in range(450)
            ],
        )
        added["category"] = 450
        session.execute(
            sa.insert(Branch.__table__),
            [
                {"code": f"B{i:04d}", "name": f"Branch {i}", "address": "", "is_active": True}
                | audit
                for i in range(200)
            ],
        )
        added["branch"] = 200
        session.execute(
            sa.insert(Coupon.__table__),
            [
                {
                    "code": f"BENCH{i:05d}",
                    "kind": "PERCENT",
                    "value": Decimal(5 + i % 20),
                    "valid_from": now,
                    "is_active": True,
                    **audit,
                }
                for i in range(rows)
            ],
        )
        added["coupon"] = rows
        prices = dict(
            session.execute(
                sa.select(Product.__table__.c.id, Product.__table__.c.price).where(
                    Product.__table__.c.is_active
                )
            ).all()
        )
        products = sorted(prices)
        orders, lines = [], []
        for i in range(rows):
            picked = rng.sample(products, ORDER_LINES)
            quantities = [rng.randint(1, 3) for _ in picked]
            order_lines = [
                {
                    "product_id": pid,
                    "quantity": q,
                    "unit_price": prices[pid],
                    "line_total": prices[pid] * q,
                }
                for pid, q in zip(picked, quantities, strict=True)
            ]
            subtotal = sum((line["line_total"] for line in order_lines), Decimal(0))
            placed = now - dt.timedelta(minutes=rows - i)  # distinct times, oldest first
            orders.append(
                {
                    "customer_id": data.customers[i % len(data.customers)],
                    "branch_id": data.branch_id,
                    "status": "CONFIRMED",
                    "subtotal": subtotal,
                    "discount": Decimal(0),
                    "total": subtotal,
                    "created_at": placed,
                    "updated_at": placed,
                    "confirmed_at": placed,
                }
            )
            lines.append(order_lines)
        order_ids = insert_ids(session, Order.__table__, orders)
        session.execute(
            sa.insert(OrderItem.__table__),
            [
                {"order_id": oid, **line, **audit}
                for oid, order_lines in zip(order_ids, lines, strict=True)
                for line in order_lines
            ],
        )
        added["order"], added["order_item"] = rows, rows * ORDER_LINES
        session.execute(
            sa.insert(Shipment.__table__),
            [
                {
                    "order_id": oid,
                    "carrier": "BenchPost",
                    "tracking_number": f"BP{oid:09d}",
                    "status": "PENDING",
                    **audit,
                }
                for oid in order_ids
            ],
        )
        session.execute(
            sa.insert(Payment.__table__),
            [
                {
                    "order_id": oid,
                    "amount": order["total"],
                    "status": "SUCCEEDED",
                    "provider": "bench",
                    "provider_reference": f"bench-{oid}",
                    **audit,
                }
                for oid, order in zip(order_ids, orders, strict=True)
            ],
        )
        added["shipment"] = added["payment"] = rows
        session.execute(
            sa.insert(InventoryMovement.__table__),
            [
                {
                    "branch_id": data.branch_id,
                    "product_id": products[i // 2 % len(products)],
                    "quantity_delta": 1 if i % 2 == 0 else -1,
                    "reason": "ADJUSTMENT",
                    "note": "benchmark",
                    "created_at": now,
                }
                for i in range(2 * rows)
            ],
        )
        added["inventory_movement"] = 2 * rows
        session.commit()
    engine.dispose()
    return replace(data, admin=admin), added


def admin_token(data: DataSet) -> str:
    """A fresh access token for the admin's login, minted right before a scenario."""
    from tecnorev.auth.security import create_access_token

    assert data.admin is not None
    return create_access_token(data.admin, family_id(data.admin))[0]


def listing_paths(url: str, collection: Collection, *, anonymous: bool) -> list[str]:
    """A page of 50 under the listing's default sort from up to ``MAX_STARTS`` starts: the
    first page, then the cursor after each row (evenly spread) that leaves a full page.  The
    cursors are made as the server makes them (``Listing.encode_cursor`` of the row's sort
    value and key), from the rows the caller may see: all of them for the admin, the active
    products and open branches for an anonymous caller."""
    import sqlalchemy as sa

    listing = collection.of()
    sort = listing.default_sort
    field_ = sort.lstrip("-")
    column, key = listing.columns[field_], listing.columns[listing.key]
    order = [column] if field_ in listing.unique else [column, key]
    statement = sa.select(column, key).where(*listing.where)
    if listing.select_from is not None:
        statement = statement.select_from(listing.select_from)
    if anonymous and "is_active" in listing.columns:
        statement = statement.where(listing.columns["is_active"].is_(True))
    statement = statement.order_by(*(c.desc() if sort.startswith("-") else c for c in order))
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
    finally:
        engine.dispose()
    starts = rows[: max(0, len(rows) - PAGE)]  # after row i come rows i+1 .. i+PAGE
    step = max(1, math.ceil(len(starts) / MAX_STARTS))
    base = f"/api/v1{collection.path}?limit={PAGE}"
    return [base] + [
        f"{base}&cursor={listing.encode_cursor(sort, value, row_key)}"
        for value, row_key in starts[::step]
    ]


# --------------------------------------------------------------------------- CPU accounting


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, user + system CPU ticks, command name) of every process now."""
    found: dict[int, tuple[int, int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat:
                raw = stat.read()
        except OSError:
            continue  # ended meanwhile
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]), comm)
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


@dataclass
class CpuSplit:
    """CPU seconds spent during one measurement, by whom."""

    server: float
    postgres: float
    generator: float
    busy: float
    capacity: float  # wall seconds x cores

    @property
    def other(self) -> float:
        return max(0.0, self.busy - self.server - self.postgres - self.generator)


def _tree(processes: dict[int, tuple[int, int, str]], root: int) -> set[int]:
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in processes.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return members


class CpuMeter:
    """CPU time of the server's processes and of the PostgreSQL backends connected to
    ``database``, sampled every ``interval`` from /proc while a measurement runs: backends
    come and go (pgbench's connections, a pool's overflow), and a process that ended cannot be
    read afterwards, so one that ends loses at most its last interval.  PostgreSQL's shared
    background processes (WAL writer, checkpointer) are not counted: other databases of the
    same server use them too."""

    def __init__(self, database: str, server_pid: int | None = None, interval: float = 0.2) -> None:
        self.database = database
        self.server_pid = server_pid
        self.interval = interval
        # pid -> (command, ticks when first seen or 0 if born during the run, last ticks)
        self._seen: dict[int, tuple[str, int, int]] = {}
        self._server: set[int] = set()
        self._backend: dict[int, bool] = {}  # postgres pid -> serves the database
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._machine0 = (0, 0)

    def _ours(self, pid: int) -> bool:
        if pid not in self._backend:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                return False
            # a backend's title: "postgres: 15/main: <user> <database> <client> <state>"
            self._backend[pid] = f" {self.database} " in title
        return self._backend[pid]

    def _sample(self, *, first: bool) -> None:
        processes = _processes()
        if self.server_pid is not None:
            self._server |= _tree(processes, self.server_pid)
        for pid, (_, ticks, comm) in processes.items():
            if pid not in self._server and not (comm == "postgres" and self._ours(pid)):
                continue
            known = self._seen.get(pid)
            if known is None or known[0] != comm:
                self._seen[pid] = (comm, ticks if first else 0, ticks)
            else:
                self._seen[pid] = (comm, known[1], ticks)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(first=False)

    def __enter__(self) -> CpuMeter:
        self._machine0 = _machine_ticks()
        self._sample(first=True)
        self._thread.start()
        return self

    def stop(self, generator: float) -> CpuSplit:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        busy1, total1 = _machine_ticks()

        def used(pids: set[int]) -> float:
            return sum(last - first for pid, (_, first, last) in self._seen.items() if pid in pids)

        postgres = {pid for pid, (comm, _, _) in self._seen.items() if comm == "postgres"}
        return CpuSplit(
            server=used(self._server - postgres) / TICK,
            postgres=used(postgres) / TICK,
            generator=generator,
            busy=(busy1 - self._machine0[0]) / TICK,
            capacity=(total1 - self._machine0[1]) / TICK,
        )

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()


def wait_for_idle(limit: float, share: float = 0.85) -> float:
    """Wait up to ``limit`` seconds for ``share`` of the CPU to be idle; the idle share seen."""
    deadline = time.monotonic() + limit
    idle = idle_share()
    while idle < share and time.monotonic() < deadline:
        idle = idle_share()
    return idle


def idle_share(seconds: float = 1.0) -> float:
    """The share of the machine's CPU that is idle over ``seconds``: others' work shows."""
    busy0, total0 = _machine_ticks()
    time.sleep(seconds)
    busy1, total1 = _machine_ticks()
    return 1 - (busy1 - busy0) / max(1, total1 - total0)


# --------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``tecnorev serve`` in a process of its own (a new session: its workers go with it)."""

    def __init__(
        self,
        url: str,
        workers: int,
        log: Path,
        log_level: str = "warning",
        *,
        stop_grace: float = 20.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.env = env or {}  # settings of this server only
        self.workers = workers
        self.log_level = log_level
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.stop_grace = stop_grace  # seconds from SIGTERM to SIGKILL
        self.process: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0  # seconds until it answered
        self.stopped = ""  # how it ended: on SIGTERM (how fast) or killed

    def __enter__(self) -> Server:
        env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "SECRET_KEY": SECRET_KEY,
            "TECNOREV_ENV": "development",
            **self.env,
        }
        command = [
            str(BIN / "tecnorev"), "serve", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--log-level", self.log_level,
        ]  # fmt: skip
        started = time.perf_counter()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
            )
        self._wait_ready()
        self.started_in = time.perf_counter() - started
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server stopped; its log:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as answer:
                    if answer.status == 200 and self._worker_count() >= self.workers:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s")

    def _worker_count(self) -> int:
        return len(self.worker_pids())

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one worker, else the
        supervisor's children started by multiprocessing (not its resource tracker)."""
        assert self.process is not None
        if self.workers == 1:
            return [self.process.pid]
        workers = []
        for pid, (ppid, _, _) in _processes().items():
            if ppid != self.process.pid:
                continue
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return sorted(workers)

    def record_connections(self, into: list[int]) -> None:
        into.extend(self.connections_per_worker())

    def connections_per_worker(self) -> list[int]:
        """How many established client connections each worker holds now.  Keep-alive
        connections stay with the worker that accepted them, so a skewed split (28 and 4)
        leaves one worker saturated while the other idles."""
        established = set()
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == self.port and fields[3] == "01":
                    established.add(f"socket:[{fields[9]}]")
        split = []
        for pid in self.worker_pids():
            count = 0
            with contextlib.suppress(OSError):
                for fd in os.scandir(f"/proc/{pid}/fd"):
                    with contextlib.suppress(OSError):
                        count += os.readlink(fd.path) in established
            split.append(count)
        return split

    def __exit__(self, *_exc: object) -> None:
        if self.process is None:
            return
        if self.process.poll() is not None:
            self.stopped = f"had stopped by itself (exit code {self.process.returncode})"
            return
        self.process.send_signal(signal.SIGTERM)  # uvicorn stops its workers, then itself
        sent = time.perf_counter()
        try:
            self.process.wait(timeout=self.stop_grace)
            self.stopped = f"stopped {time.perf_counter() - sent:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            self.stopped = f"still running {self.stop_grace:.0f} s after SIGTERM: killed"
        # the session this object started: also a worker its supervisor left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def check_request(base_url: str, load: loadgen.Load) -> None:
    """Send one request of ``load`` and stop here, with the answer, unless it succeeds; of a
    list, the first and the deepest page start, each a full page (or one item)."""
    if isinstance(load, loadgen.ListLoad):
        headers = _bearer(load.token) if load.token else {}
        for path in (load.paths[0], load.paths[-1]):
            request = urllib.request.Request(base_url + path, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    page = json.load(answer)
            except urllib.error.HTTPError as exc:
                raise RuntimeError(
                    f"GET {request.full_url} answered {exc.code}: {exc.read()[:500]!r}"
                ) from exc
            if isinstance(page, dict) and "items" not in page and "id" in page:
                continue  # one item (the product page), not a page
            items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(items, list) or len(items) != PAGE:
                raise RuntimeError(f"GET {request.full_url}: not a page of {PAGE}: {page!r:.300}")
        return
    else:
        items = [{"product_id": load.first_product + i, "quantity": 1} for i in range(load.lines)]
        body = json.dumps({"branch_id": load.branch_id, "items": items}).encode()
        request = urllib.request.Request(
            base_url + loadgen.ORDERS_PATH,
            data=body,
            headers={
                "Authorization": f"Bearer {load.tokens[0]}",
                "Content-Type": "application/json",
            },
        )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(
            f"{request.get_method()} {request.full_url} answered {exc.code}: {exc.read()[:500]!r}"
        ) from exc


# --------------------------------------------------------------------------- pgbench


@dataclass
class FloorResult:
    script: str
    tps: float
    p50_ms: float
    p99_ms: float
    failed: int
    cpu: CpuSplit | None = None
    idle_before: float = 1.0


def pgbench_variables(data: DataSet) -> dict[str, int]:
    return {
        "first_product": data.first_product,
        "products": data.active,
        "page": PAGE,
        "branch": data.branch_id,
        "first_customer": data.first_customer,
        "customers": len(data.customers),
    }


def run_pgbench(
    url: str, script: Path, data: DataSet, *, clients: int, duration: float
) -> FloorResult:
    parts = urllib.parse.urlsplit(url)
    with tempfile.TemporaryDirectory(prefix="tecnorev-pgbench-") as tmp:
        command = [
            shutil.which("pgbench") or "pgbench", "-n", "-M", "simple",
            "-c", str(clients), "-j", "2", "-T", str(max(1, round(duration))),
            "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
            "-U", parts.username or "postgres",
            "-f", str(script), "-l", "--log-prefix", str(Path(tmp) / "log"),
        ]  # fmt: skip
        for name, value in pgbench_variables(data).items():
            command += ["-D", f"{name}={value}"]
        command.append(parts.path.lstrip("/"))
        env = {**os.environ, "PGPASSWORD": parts.password or ""}
        usage0 = os.times()
        with CpuMeter(parts.path.lstrip("/")) as meter:
            output = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
            usage1 = os.times()
            generator = (usage1.children_user - usage0.children_user) + (
                usage1.children_system - usage0.children_system
            )
            cpu = meter.stop(generator)
        latencies: list[int] = []
        for log in Path(tmp).glob("log*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output.stdout)
    if tps is None:
        raise RuntimeError(f"pgbench printed no tps:\n{output.stdout}\n{output.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", output.stdout)
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] / 1000

    return FloorResult(
        script=script.name,
        tps=float(tps.group(1)),
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        failed=int(failed.group(1)) if failed else 0,
        cpu=cpu,
    )


# --------------------------------------------------------------------------- profiling


def _py_spy() -> str | None:
    return shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)


_BUCKETS = (
    ("psycopg2", ("psycopg2/",)),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("sqlmodel", ("sqlmodel/",)),
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("fastapi", ("fastapi/",)),
    ("starlette", ("starlette/",)),
    ("anyio (worker threads)", ("anyio/", "concurrent/", "threading.py", "queue.py")),
    ("uvicorn, httptools, uvloop", ("uvicorn/", "httptools/", "uvloop/")),
    ("asyncio", ("asyncio/",)),
    ("jwt", ("jwt/",)),
    ("tecnorev", ("tecnorev/",)),
)


def _library(frame: str) -> str:
    # py-spy writes a frame as "function (path/to/file.py:line)"
    location = frame[frame.rfind("(") + 1 :]
    for name, needles in _BUCKETS:
        if any(location.startswith(n) or f"/{n}" in location for n in needles):
            return name
    return "other Python"


# Where a request's time goes, by the frames samples pass through (inclusive).
_STAGES = (
    ("thread hand-offs (anyio, event loop side)", ("run_sync_in_worker_thread (anyio",)),
    ("solving dependencies (FastAPI)", ("solve_dependencies (fastapi",)),
    ("validating and serializing the response", ("serialize_response (fastapi",)),
    ("SQLAlchemy: executing statements", ("Connection.execute (sqlalchemy",)),
    ("SQLAlchemy: ORM flush", ("Session.flush (sqlalchemy",)),
    ("SQLAlchemy: commit", ("Session.commit (sqlalchemy",)),
    ("SQLAlchemy: pool checkout and pre-ping", ("Pool.connect (sqlalchemy",)),
    ("SQLAlchemy: statement cache keys", ("_generate_cache_key (sqlalchemy",)),
    ("psycopg2: sending statements, reading rows", ("do_execute (sqlalchemy",)),
)
_ENTRY = ("core/cli.py", "api/serve.py")


def _project_packages() -> tuple[str, ...]:
    """Folder prefixes under which py-spy shows this project's frames ("sales/service.py")."""
    import tecnorev

    return tuple(
        f"{child.name}/"
        for folder in tecnorev.__path__
        for child in Path(folder).iterdir()
        if child.is_dir() and not child.name.startswith("_")
    )


def summarize_profile(collapsed: Path, top: int = 20) -> list[str]:
    """A py-spy ``--format raw`` profile: on-GIL samples by library of the running frame, by
    stage of a request, and by this project's functions (both inclusive)."""
    by_library: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    prefixes = _project_packages()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        by_library[_library(frames[-1])] += samples
        # a function once per stack, whatever the line: "place_order (sales/service.py)"
        for function in {re.sub(r":\d+\)$", ")", frame) for frame in frames}:
            location = function[function.rfind("(") + 1 :]
            if location.startswith(prefixes) and not location.startswith(_ENTRY):
                ours[function] += samples
        for name, needles in _STAGES:
            if any(needle in frame for frame in frames for needle in needles):
                stages[name] += samples
    if not total:
        return ["  (no samples)"]
    lines = [f"  {total} samples holding the GIL; by library of the running frame:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_library.most_common()]
    lines.append("  by stage (inclusive; stages nest):")
    lines += [f"    {100 * stages[name] / total:5.1f}%  {name}" for name, _ in _STAGES]
    lines.append("  this project's functions (inclusive):")
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in ours.most_common(top)]
    return lines


def profile(
    options: Options, url: str, data: DataSet, loads: dict[str, loadgen.Load], log: Path
) -> None:
    spy = _py_spy()
    if spy is None:
        print("\nprofiling skipped: py-spy is not installed (pip install py-spy)")
        return
    assert options.profile is not None
    options.profile.mkdir(parents=True, exist_ok=True)
    print(f"\nprofiles of one worker under each load ({options.profile}):")
    with Server(url, 1, log, options.log_level) as server:
        for name, load in loads.items():
            fresh = _fresh(load, data)
            warm(options, server.base_url, fresh)
            stem = options.profile / re.sub(r"[^A-Za-z0-9]+", "_", name)
            assert server.process is not None
            spy_command = [
                spy, "record", "--pid", str(server.process.pid), "--rate", "250",
                "--duration", str(max(1, round(options.duration))), "--gil", "--nonblocking",
                "--format", "raw", "--output", f"{stem}.txt",
            ]  # fmt: skip
            spying = subprocess.Popen(
                spy_command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            time.sleep(0.5)
            loadgen.run(
                fresh,
                base_url=server.base_url,
                clients=options.clients,
                duration=options.duration,
                tool=options.tool,
            )
            _, error = spying.communicate(timeout=60)
            if spying.returncode != 0 or not Path(f"{stem}.txt").exists():
                print(f"  py-spy failed for {name}: {error.decode(errors='replace')[-500:]}")
                continue
            print(f"{name} ({stem}.txt: collapsed stacks, for a flame graph):")
            print("\n".join(summarize_profile(Path(f"{stem}.txt"))))


# --------------------------------------------------------------------------- storms and floods

PRODUCTS_PATH = "/api/v1/catalog/products"
HEALTH_PATH = "/health"
LOGIN_PATH = "/api/v1/auth/token"
REFRESH_PATH = "/api/v1/auth/refresh"
DEMO_BRANCH = "CENTRO"  # the demo's main branch: it carries every active demo product
LAST_UNITS = 10
PROBE_IDLE = 2.0  # seconds of probe on the idle server before each measurement: the baseline
SLOW = 5.0  # seconds: an answer slower than this is counted as slow
STOP_GRACE = 5.0  # seconds from SIGTERM to SIGKILL; a frozen worker never stops by itself
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class DemoSet:
    """Who and what of ``tecnorev demo load`` the storms and the flood use."""

    manager_id: int
    customer_id: int
    customer_email: str
    branch_id: int  # DEMO_BRANCH
    product_id: int  # an active product DEMO_BRANCH stocks: its last units are fought over


@contextlib.contextmanager
def _session(url: str) -> Iterator[Session]:
    import sqlalchemy as sa
    from sqlmodel import Session

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def load_demo(url: str) -> DemoSet:
    from sqlmodel import select

    from tecnorev.auth.demo import CUSTOMERS, MANAGER
    from tecnorev.auth.models import User
    from tecnorev.catalog.models import Product
    from tecnorev.inventory.models import Branch, StockEntry

    subprocess.run(
        [str(BIN / "tecnorev"), "demo", "load"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    with _session(url) as session:
        users = dict(
            session.exec(
                select(User.email, User.id).where(User.email.in_([MANAGER, CUSTOMERS[0]]))
            ).all()
        )
        branch_id = session.exec(select(Branch.id).where(Branch.code == DEMO_BRANCH)).one()
        product_id = session.exec(
            select(StockEntry.product_id)
            .join(Product, Product.id == StockEntry.product_id)
            .where(StockEntry.branch_id == branch_id, Product.is_active)
            .order_by(StockEntry.product_id)
        ).first()
    if product_id is None:
        raise RuntimeError(f"the demo branch {DEMO_BRANCH} stocks no active product")
    return DemoSet(
        manager_id=users[MANAGER],
        customer_id=users[CUSTOMERS[0]],
        customer_email=CUSTOMERS[0],
        branch_id=branch_id,
        product_id=product_id,
    )


def open_login(url: str, user_id: int) -> IssuedTokens:
    """A new login for ``user_id``, as the login endpoint opens one once the password is
    checked: argon2 is not what the storms are about."""
    from tecnorev.auth.service import open_login as open_

    with _session(url) as session:
        tokens = open_(session, user_id=user_id)
        session.commit()
    return tokens


def set_stock(url: str, *, branch_id: int, product_id: int, quantity: int) -> None:
    """Bring one stock line to ``quantity`` with an adjustment, so the ledger agrees."""
    from tecnorev.inventory.service import adjust_stock, stock_levels

    with _session(url) as session:
        levels = stock_levels(session, branch_id, [product_id])
        delta = quantity - (levels[0].quantity if levels else 0)
        if delta:
            adjust_stock(
                session,
                branch_id=branch_id,
                product_id=product_id,
                quantity_delta=delta,
                reason="benchmark: the last units",
                author_id=None,
            )
        session.commit()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _order_body(branch_id: int, product_id: int) -> bytes:
    items = [{"product_id": product_id, "quantity": 1}]
    return json.dumps({"branch_id": branch_id, "items": items}).encode()


def place_pending_order(base_url: str, token: str, *, branch_id: int, product_id: int) -> int:
    request = urllib.request.Request(
        base_url + loadgen.ORDERS_PATH,
        data=_order_body(branch_id, product_id),
        headers={**_bearer(token), **JSON},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(json.load(answer)["id"])
    except urllib.error.HTTPError as exc:
        raise RuntimeError(
            f"placing the storm's order answered {exc.code}: {exc.read()[:500]!r}"
        ) from exc


@dataclass(frozen=True)
class Storm:
    name: str
    what: str
    calls: list[pressure.Call]
    outcome: Callable[[], str]  # the contested row as the database holds it afterwards


def order_storm(url: str, data: DataSet, demo: DemoSet, base_url: str, n: int) -> Storm:
    """One PENDING order: a manager confirms and cancels it, its customer cancels it."""
    from sqlmodel import select

    from tecnorev.sales.models import Order

    manager = open_login(url, demo.manager_id).access_token
    customer = open_login(url, demo.customer_id).access_token
    order_id = place_pending_order(
        base_url, customer, branch_id=data.branch_id, product_id=data.first_product
    )
    path = f"{loadgen.ORDERS_PATH}/{order_id}"
    kinds = [
        (f"{path}/confirm", manager),
        (f"{path}/cancel", manager),
        (f"{path}/cancel", customer),
    ]
    calls = [
        pressure.Call("POST", action, b"", _bearer(token))
        for action, token in (kinds[i % len(kinds)] for i in range(n))
    ]

    def outcome() -> str:
        with _session(url) as session:
            status = session.exec(select(Order.status).where(Order.id == order_id)).one()
        return f"the order is {status.value}"

    return Storm(
        "one order",
        f"{n} confirm/cancel (manager) and cancel (its customer) of order {order_id}",
        calls,
        outcome,
    )


def refresh_storm(url: str, _data: DataSet, demo: DemoSet, _base_url: str, n: int) -> Storm:
    """One refresh token presented ``n`` times at once: one exchange, the rest are reuse."""
    import sqlalchemy as sa
    from sqlmodel import select

    from tecnorev.auth.models import RefreshToken

    login = open_login(url, demo.customer_id)
    body = json.dumps({"refresh_token": login.refresh_token}).encode()
    calls = [pressure.Call("POST", REFRESH_PATH, body, JSON) for _ in range(n)]

    def outcome() -> str:
        with _session(url) as session:
            live = session.exec(
                select(sa.func.count())
                .select_from(RefreshToken)
                .where(RefreshToken.family_id == login.login_id, RefreshToken.revoked_at.is_(None))
            ).one()
        return f"{live} live refresh token(s) left in the login"

    return Storm("one refresh token", f"{n} exchanges of one refresh token", calls, outcome)


def last_units_storm(url: str, data: DataSet, demo: DemoSet, _base_url: str, n: int) -> Storm:
    """Orders of one unit each, by many customers, for the last units of one product."""
    from tecnorev.inventory.service import stock_levels

    set_stock(url, branch_id=demo.branch_id, product_id=demo.product_id, quantity=LAST_UNITS)
    tokens = access_tokens(data)
    body = _order_body(demo.branch_id, demo.product_id)
    orders = n // 2
    calls = [
        pressure.Call(
            "POST", loadgen.ORDERS_PATH, body, {**_bearer(tokens[i % len(tokens)]), **JSON}
        )
        for i in range(orders)
    ]

    def outcome() -> str:
        with _session(url) as session:
            left = stock_levels(session, demo.branch_id, [demo.product_id])[0].quantity
        return f"{left} of the {LAST_UNITS} units left"

    return Storm(
        "last units",
        f"{orders} orders of 1 unit for the last {LAST_UNITS} of product {demo.product_id}",
        calls,
        outcome,
    )


STORMS = (order_storm, refresh_storm, last_units_storm)


def database_sessions(url: str) -> str:
    """The benchmark database's client sessions now, by state: a transaction left open and
    requests queued on a lock show here."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT state, wait_event_type = 'Lock' AS on_lock, count(*)"
                    " FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                    " GROUP BY 1, 2 ORDER BY 3 DESC"
                )
            ).all()
    finally:
        engine.dispose()
    parts = [f"{n} {state or '?'}{' on a lock' if on_lock else ''}" for state, on_lock, n in rows]
    return ", ".join(parts) or "none"


@dataclass
class StormResult:
    name: str
    workers: int
    tally: pressure.Tally
    idle: dict[str, list[pressure.Answer]]  # the probe's answers by path, just before
    during: dict[str, list[pressure.Answer]]
    after: dict[str, list[pressure.Answer]]  # GETs of the probe's paths once it was over
    sessions: str  # the database's sessions then
    outcome: str
    cpu_idle: float  # share of the machine's CPU idle during the baseline
    stopped: str = ""


@dataclass
class FloodResult:
    workers: int
    tally: pressure.Tally
    idle: list[pressure.Answer]  # the product list's, just before
    during: list[pressure.Answer]
    before: pressure.Memory
    peak: pressure.Memory
    after: pressure.Memory
    cpu_idle: float
    stopped: str = ""


def _ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "none"  # the percentile fell on a request never answered
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _probe_line(label: str, answers: list[pressure.Answer]) -> str:
    f = pressure.figures(answers)
    unanswered = f", {f.unanswered} never answered" if f.unanswered else ""
    failed = f", {f.failed} not 2xx" if f.failed else ""
    return (
        f"{label} p50 {_ms(f.p50)} / p99 {_ms(f.p99)} / max {_ms(f.max)} ms "
        f"({f.sent} sent{failed}{unanswered})"
    )


def _ok(answers: list[pressure.Answer]) -> str:
    return f"{sum(a.status.startswith('2') for a in answers)}/{len(answers)}"


def _all(answers: dict[str, list[pressure.Answer]]) -> list[pressure.Answer]:
    return [answer for got in answers.values() for answer in got]


def baseline(
    options: Options, base_url: str, paths: list[str]
) -> tuple[float, dict[str, list[pressure.Answer]]]:
    """The probe on the idle server, and the share of the machine's CPU idle meanwhile (the
    probe's own few requests included): others' work shows in it."""
    if options.wait_idle:
        wait_for_idle(options.wait_idle)
    busy0, total0 = _machine_ticks()
    answers = pressure.probe_for(base_url, paths, PROBE_IDLE, timeout=options.request_timeout)
    busy1, total1 = _machine_ticks()
    return 1 - (busy1 - busy0) / max(1, total1 - total0), answers


def measure_storms(
    options: Options, url: str, data: DataSet, demo: DemoSet, report: Report, log: Path
) -> None:
    timeout = options.request_timeout
    print(
        f"\nlock storms: {options.storm_requests} requests released at once (the last units: "
        f"half as many), {timeout:.0f} s client timeout each, a storm cut off {timeout + 2:.0f} s "
        "after its release; a fresh server for each storm; a probe GETs the product list and "
        "/health every 50 ms"
    )
    probe_paths = [PRODUCTS_PATH, HEALTH_PATH]
    checks = [pressure.Call("GET", path) for path in probe_paths] * 5
    for workers in options.workers:
        for build in STORMS:
            with Server(url, workers, log, options.log_level, stop_grace=STOP_GRACE) as server:
                storm = build(url, data, demo, server.base_url, options.storm_requests)
                cpu_idle, idle = baseline(options, server.base_url, probe_paths)
                with pressure.Probe(server.base_url, probe_paths, timeout=timeout) as probe:
                    tally = pressure.burst(
                        server.base_url, storm.calls, timeout=timeout, limit=timeout + 2
                    )
                    during = probe.stop()
                # does it still answer, now that every request of the storm is over or given up?
                checked = pressure.burst(server.base_url, checks, timeout=2, limit=3)
                after: dict[str, list[pressure.Answer]] = {path: [] for path in probe_paths}
                for call, answer in zip(checks, checked.answers, strict=True):
                    after[call.path].append(answer)
                result = StormResult(
                    storm.name,
                    workers,
                    tally,
                    idle,
                    during,
                    after,
                    sessions=database_sessions(url),
                    outcome=storm.outcome(),
                    cpu_idle=cpu_idle,
                )
            result.stopped = server.stopped
            report.storms.append(result)
            print_storm(result, storm.what, server.started_in)


def print_storm(result: StormResult, what: str, started_in: float) -> None:
    t = result.tally
    print(f"  {result.name}, {result.workers} worker(s): {what}")
    print(
        f"    {t.requests} requests in {t.seconds:.1f} s: {t.histogram()}; 5xx {t.server_errors}, "
        f"slower than {SLOW:.0f} s {t.slower_than(SLOW)}, never answered {t.unanswered}, "
        f"slowest answer {t.max_seconds:.2f} s"
    )
    for path in result.idle:
        print(f"    probe {path}: {_probe_line('idle', result.idle[path])}")
        print(f"    {'':>{len(path) + 7}} {_probe_line('storm', result.during[path])}")
    answered = ", ".join(f"{path} {_ok(answers)}" for path, answers in result.after.items())
    print(f"    afterwards, GETs answered 2xx within 2 s: {answered}")
    print(f"    afterwards, database sessions: {result.sessions}; {result.outcome}")
    print(
        f"    server: started in {started_in:.1f} s, {result.stopped}; "
        f"machine CPU idle at the baseline: {result.cpu_idle:.0%}"
    )


def login_call(email: str) -> Callable[[random.Random], pressure.Call]:
    """Half wrong passwords for ``email``, half unknown accounts."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def make(rng: random.Random) -> pressure.Call:
        if rng.random() < 0.5:
            username = email
        else:
            username = f"nobody-{rng.getrandbits(64):016x}@bench.example.com"
        password = f"wrong-{rng.getrandbits(64):016x}"
        form = urllib.parse.urlencode({"username": username, "password": password})
        return pressure.Call("POST", LOGIN_PATH, form.encode(), headers)

    return make


def measure_floods(options: Options, url: str, demo: DemoSet, report: Report, log: Path) -> None:
    timeout = options.request_timeout
    print(
        f"\nlogin flood: {options.flood_clients} anonymous clients POST {LOGIN_PATH} for "
        f"{options.flood_duration:.0f} s (wrong passwords of {demo.customer_email}, unknown "
        f"accounts), {timeout:.0f} s client timeout; the workers' VmRSS sampled every 200 ms; "
        "a probe GETs the product list every 50 ms"
    )
    make = login_call(demo.customer_email)
    for workers in options.workers:
        with Server(url, workers, log, options.log_level, stop_grace=STOP_GRACE) as server:
            cpu_idle, idle = baseline(options, server.base_url, [PRODUCTS_PATH])
            before = pressure.Memory.now(server.worker_pids())
            with (
                pressure.MemorySampler(server.worker_pids) as memory,
                pressure.Probe(server.base_url, [PRODUCTS_PATH], timeout=timeout) as probe,
            ):
                tally = pressure.flood(
                    server.base_url,
                    make,
                    clients=options.flood_clients,
                    duration=options.flood_duration,
                    timeout=timeout,
                )
                during = probe.stop()
            time.sleep(1.0)
            result = FloodResult(
                workers,
                tally,
                idle[PRODUCTS_PATH],
                during[PRODUCTS_PATH],
                before,
                memory.peak,
                pressure.Memory.now(server.worker_pids()),
                cpu_idle,
            )
        result.stopped = server.stopped
        report.floods.append(result)
        print_flood(result, server.started_in)


def _rate(tally: pressure.Tally) -> float:
    return len(tally.answered) / max(tally.seconds, 1e-9)


def _mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def print_flood(result: FloodResult, started_in: float) -> None:
    t = result.tally
    logins = pressure.figures(t.answers)
    print(f"  {result.workers} worker(s):")
    print(
        f"    {t.requests} logins in {t.seconds:.1f} s ({_rate(t):.1f} answered/s): "
        f"{t.histogram()}; 5xx {t.server_errors}, never answered {t.unanswered}; login "
        f"p50 {_ms(logins.p50)} / p99 {_ms(logins.p99)} / max {_ms(logins.max)} ms"
    )
    print(f"    probe {PRODUCTS_PATH}: {_probe_line('idle', result.idle)}")
    print(f"    {'':>{len(PRODUCTS_PATH) + 7}} {_probe_line('flood', result.during)}")
    largest = f" (largest worker {_mib(result.peak.largest)})" if result.workers > 1 else ""
    print(
        f"    workers' resident memory, MiB: before {_mib(result.before.total)}, peak "
        f"{_mib(result.peak.total)}{largest}, 1 s after {_mib(result.after.total)}"
    )
    print(
        f"    server: started in {started_in:.1f} s, {result.stopped}; "
        f"machine CPU idle at the baseline: {result.cpu_idle:.0%}"
    )


def print_pressure_tables(report: Report) -> None:
    if report.storms:
        head = (
            f"{'lock storm':<17} {'workers':>7} {'sent':>4} {'5xx':>4} {'>5 s':>4} "
            f"{'never answered':>14} {'max s':>6} {'probe p99 idle':>14} {'storm':>7} "
            f"{'max':>7} {'after':>9}  statuses"
        )
        print("\n" + head + "\n" + "-" * len(head))
        for s in report.storms:
            t = s.tally
            idle = pressure.figures(_all(s.idle))
            during = pressure.figures(_all(s.during))
            after = " ".join(_ok(answers) for answers in s.after.values())
            print(
                f"{s.name:<17} {s.workers:>7} {t.requests:>4} {t.server_errors:>4} "
                f"{t.slower_than(SLOW):>4} {t.unanswered:>14} {t.max_seconds:>6.2f} "
                f"{_ms(idle.p99):>11} ms {_ms(during.p99):>7} {_ms(during.max):>7} "
                f"{after:>9}  {t.histogram()}"
            )
        print(
            "probe: the product list and /health together, ms (none: the figure fell on a GET "
            "never answered); after: GETs of the product list and of /health answered 2xx "
            "within 2 s once the storm was over"
        )
    if report.floods:
        head = (
            f"{'login flood':<11} {'workers':>7} {'answered/s':>10} {'5xx':>5} "
            f"{'never answered':>14} "
            f"{'RSS MiB before':>14} {'peak':>6} {'after':>6} {'list p50/p99 idle':>18} "
            f"{'flood':>13}  statuses"
        )
        print("\n" + head + "\n" + "-" * len(head))
        for f in report.floods:
            t = f.tally
            idle, during = pressure.figures(f.idle), pressure.figures(f.during)
            print(
                f"{'':<11} {f.workers:>7} {_rate(t):>10.1f} "
                f"{t.server_errors:>5} {t.unanswered:>14} {_mib(f.before.total):>14} "
                f"{_mib(f.peak.total):>6} {_mib(f.after.total):>6} "
                f"{_ms(idle.p50) + ' / ' + _ms(idle.p99):>18} "
                f"{_ms(during.p50) + ' / ' + _ms(during.p99):>13}  {t.histogram()}"
            )
    busy = [(f"the '{s.name}' storm ({s.workers} worker(s))", s.cpu_idle) for s in report.storms]
    busy += [(f"the login flood ({f.workers} worker(s))", f.cpu_idle) for f in report.floods]
    for what, idle_share in busy:
        if idle_share < 0.85:
            print(
                f"note: before {what} only {idle_share:.0%} of the CPU was idle: something else "
                "was running, so its latencies are high"
            )


# --------------------------------------------------------------------------- the run


@dataclass
class Measurement:
    scenario: str
    workers: int
    result: loadgen.LoadResult
    cpu: CpuSplit
    idle_before: float


@dataclass
class Report:
    measurements: list[Measurement] = field(default_factory=list)
    floors: dict[str, FloorResult] = field(default_factory=dict)
    storms: list[StormResult] = field(default_factory=list)
    floods: list[FloodResult] = field(default_factory=list)
    listings: list[Measurement] = field(default_factory=list)
    reference: Measurement | None = None  # the template's 50-item list
    reference_note: str = ""  # what was measured as the reference, or why nothing was


def _fresh(load: loadgen.Load, data: DataSet) -> loadgen.Load:
    if isinstance(load, loadgen.OrderLoad):
        return loadgen.OrderLoad(
            tokens=access_tokens(data),
            first_product=load.first_product,
            products=load.products,
            branch_id=load.branch_id,
            lines=load.lines,
        )
    if load.token:
        return loadgen.ListLoad(paths=load.paths, token=admin_token(data), gzip=load.gzip)
    return load


NAME = 28  # width of a scenario's name in the lines printed


def measure_http(options: Options, url: str, data: DataSet, report: Report, log: Path) -> None:
    loads: dict[str, loadgen.Load] = {
        "product list": loadgen.ListLoad(paths=list_paths(data), gzip=options.gzip),
        # a storefront's product page: one active product with its images, anonymously
        "product page": loadgen.ListLoad(
            paths=[
                f"/api/v1/catalog/products/{product}"
                for product in range(data.first_product, data.first_product + data.active)
            ],
            gzip=options.gzip,
        ),
    }
    for collection, anonymous in listing_scenarios(options):
        paths = listing_paths(url, collection, anonymous=anonymous)
        token = "" if anonymous else "admin"  # minted afresh before each run (_fresh)
        loads[collection.scenario(anonymous)] = loadgen.ListLoad(
            paths=paths, token=token, gzip=options.gzip
        )
    loads |= {
        "order placement": loadgen.OrderLoad(
            tokens=[],
            first_product=data.first_product,
            products=data.active,
            branch_id=data.branch_id,
            lines=ORDER_LINES,
        ),
    }
    listings = {c.scenario(anonymous) for c, anonymous in listing_scenarios(options)}
    loads = {
        name: load for name, load in loads.items() if name in options.scenarios or name in listings
    }
    if not loads:
        return
    for workers in options.workers:
        with Server(url, workers, log, options.log_level) as server:
            print(
                f"\nserver: tecnorev serve --workers {workers} --log-level {options.log_level} "
                f"(port {server.port})"
            )
            warm_up(options, server, data, loads.values())
            for name, load in loads.items():
                idle = wait_for_idle(options.wait_idle)
                split: list[int] = []
                probe = threading.Timer(
                    options.duration / 2, server.record_connections, args=(split,)
                )
                probe.start()
                result, cpu = measure_load(options, server, url, _fresh(load, data))
                measured = Measurement(name, workers, result, cpu, idle)
                (report.listings if name in listings else report.measurements).append(measured)
                print(
                    f"  {name:<{NAME}} {result.rate:8.0f} req/s  p50 {result.p50_ms:6.1f} ms  "
                    f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}  ({result.tool}"
                    f"{', ' + _statuses(result) if result.statuses else ''})"
                )
                probe.join()
                print(f"  {'':<{NAME}} {_cpu_line(cpu, result.requests)}")
                if workers > 1:
                    print(
                        f"  {'':<{NAME}} client connections per worker (mid-run): "
                        + " / ".join(map(str, split))
                    )
    if options.profile is not None:
        profile(options, url, data, loads, log)


def warm_up(options: Options, server: Server, data: DataSet, loads: Iterable[loadgen.Load]) -> None:
    """Check each load's request answers, then run it for the warm-up time."""
    for load in loads:
        fresh = _fresh(load, data)
        check_request(server.base_url, fresh)
        warm(options, server.base_url, fresh)


def warm(options: Options, base_url: str, load: loadgen.Load) -> None:
    """Run ``load`` for the warm-up time, its figures not kept."""
    loadgen.run(
        load,
        base_url=base_url,
        clients=options.clients,
        duration=options.warmup,
        tool=options.tool,
    )


def measure_load(
    options: Options, server: Server | reference.Template, url: str, load: loadgen.Load
) -> tuple[loadgen.LoadResult, CpuSplit]:
    """One measurement: the load for the set time, and where the CPU went meanwhile."""
    assert server.process is not None
    with CpuMeter(_database_name(url), server.process.pid) as meter:
        result = loadgen.run(
            load,
            base_url=server.base_url,
            clients=options.clients,
            duration=options.duration,
            tool=options.tool,
        )
        cpu = meter.stop(result.cpu_seconds)
    return result, cpu


def measure_reference(options: Options, report: Report, log: Path) -> None:
    """The template's 50-item list as its superuser, 1 worker, under the same load generator,
    clients and duration; a failure is reported, and the run goes on without it."""
    if options.template is None:
        report.reference_note = reference.NOT_MEASURED.removeprefix("reference: ")
        print(f"\n{reference.NOT_MEASURED}")
        return
    print(f"\nreference: full-stack-fastapi-template at {options.template}")
    try:
        with (
            throwaway_database(options.admin_url) as url,
            reference.Template(options.template, url, _free_port(), log) as template,
        ):
            shown = template.check_page()
            report.reference_note = (
                f"full-stack-fastapi-template {template.commit} (Python {template.python}), "
                f"uvicorn app.main:app --workers 1, GET {reference.PAGE_PATH} as its superuser "
                f"({shown} of {reference.ITEMS} items)"
            )
            print(f"  {report.reference_note}")
            load = loadgen.ListLoad(
                paths=[reference.PAGE_PATH], token=template.token, gzip=options.gzip
            )
            warm(options, template.base_url, load)
            idle = wait_for_idle(options.wait_idle)
            result, cpu = measure_load(options, template, url, load)
            report.reference = Measurement("template items", 1, result, cpu, idle)
            print(
                f"  {'template items':<{NAME}} {result.rate:8.0f} req/s  p50 "
                f"{result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}  "
                f"({result.tool})"
            )
            print(f"  {'':<{NAME}} {_cpu_line(cpu, result.requests)}")
    except Exception as exc:  # reported; Tecno Rev's figures stand without it
        report.reference_note = f"not measured ({exc})"
        print(f"  reference: {report.reference_note}")


def _statuses(result: loadgen.LoadResult) -> str:
    return " ".join(f"{status}: {n}" for status, n in sorted(result.statuses.items()))


def _cpu_line(cpu: CpuSplit, requests: int) -> str:
    per = 1000 / max(1, requests)
    return (
        f"CPU s: server {cpu.server:.1f}, PostgreSQL {cpu.postgres:.1f}, "
        f"load generator {cpu.generator:.1f}, other {cpu.other:.1f} of {cpu.capacity:.1f}; "
        f"per request ms: server {cpu.server * per:.2f}, PostgreSQL {cpu.postgres * per:.2f}"
    )


FLOORS = {
    "product list": "list_page.sql",
    "order placement": "place_order.sql",
    "order writes only": "place_order_core.sql",
}
FLOOR_OF = {"order writes only": "order placement"}  # the others are their scenario's


def floors_wanted(options: Options) -> list[str]:
    if not options.floor:
        return []
    return [name for name in FLOORS if FLOOR_OF.get(name, name) in options.scenarios]


def measure_floor(options: Options, url: str, data: DataSet, report: Report) -> None:
    print(f"\ndatabase floor: pgbench -M simple -c {options.clients} -j 2 (scripts in bench/sql)")
    for name in floors_wanted(options):
        script = FLOORS[name]
        idle = wait_for_idle(options.wait_idle)
        floor = run_pgbench(
            url, SQL / script, data, clients=options.clients, duration=options.duration
        )
        floor.idle_before = idle
        report.floors[name] = floor
        print(
            f"  {name:<18} {floor.tps:8.0f} TPS    p50 {floor.p50_ms:6.1f} ms  "
            f"p99 {floor.p99_ms:6.1f} ms  failed {floor.failed}  ({script})"
        )
        assert floor.cpu is not None
        per = 1000 / max(1, floor.tps * options.duration)
        print(
            f"  {'':<18} CPU s: PostgreSQL {floor.cpu.postgres:.1f}, pgbench "
            f"{floor.cpu.generator:.1f}, other {floor.cpu.other:.1f} of "
            f"{floor.cpu.capacity:.1f}; PostgreSQL per transaction ms "
            f"{floor.cpu.postgres * per:.2f}"
        )


def print_table(report: Report) -> None:
    if report.measurements:
        print_load_table(report)
    if report.listings or report.reference_note:
        print_listing_table(report)
    print_pressure_tables(report)


def print_listing_table(report: Report) -> None:
    """Every listing next to the template's 50-item list: requests/s as a multiple of the
    template's (the goal is 3x, judged with the template's worker count) and p99 (< 50 ms)."""
    rows = list(report.listings) + [
        replace(m, scenario=PRODUCT_LIST_IS + " (= product list)")
        for m in report.measurements
        if m.scenario == "product list"
    ]
    order = [c.scenario(a) for c in COLLECTIONS for a in (True, False) if c.public or not a]
    rows.sort(key=lambda m: (m.workers, order.index(m.scenario.split(" (")[0])))
    ref = report.reference
    head = (
        f"{'listing (50 rows a page)':<40} {'workers':>7} {'req/s':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'server ms':>9} {'PG ms':>6} {'÷ template':>10}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    if ref is not None:
        print(_listing_row("template GET /items/?limit=50 (superuser)", ref, None))
    for m in rows:
        print(_listing_row(m.scenario, m, ref))
    print(f"reference: {report.reference_note}")
    print("server ms, PG ms: CPU per request of the server's processes and of PostgreSQL")
    if not rows:
        return
    slow = [m for m in rows if m.result.p99_ms >= GOAL_LIST_P99_MS]
    print(
        f"  p99 < {GOAL_LIST_P99_MS:.0f} ms: {len(rows) - len(slow)} of {len(rows)} listing "
        f"measurements met" + ("; missed: " + _names(slow) if slow else "")
    )
    if ref is not None and ref.result.rate:
        judged = [m for m in rows if m.workers == ref.workers]
        short = [m for m in judged if m.result.rate / ref.result.rate < GOAL_TEMPLATE_RATIO]
        print(
            f"  >= {GOAL_TEMPLATE_RATIO:.0f}x the template's req/s with {ref.workers} worker(s) "
            f"like it: {len(judged) - len(short)} of {len(judged)} met"
            + ("; missed: " + _names(short) if short else "")
        )
    for m in rows + ([ref] if ref else []):
        if m.idle_before < 0.85:
            print(
                f"note: before '{m.scenario}' ({m.workers} worker(s)) only {m.idle_before:.0%} "
                "of the CPU was idle: something else was running, so its figures are low"
            )


def _listing_row(name: str, m: Measurement, ref: Measurement | None) -> str:
    per = 1000 / max(1, m.result.requests)
    ratio = f"{m.result.rate / ref.result.rate:9.1f}x" if ref and ref.result.rate else f"{'-':>10}"
    return (
        f"{name:<40} {m.workers:>7} {m.result.rate:7.0f} {m.result.p50_ms:7.1f} "
        f"{m.result.p99_ms:7.1f} {m.result.errors:>6} {m.cpu.server * per:9.2f} "
        f"{m.cpu.postgres * per:6.2f} {ratio}"
    )


def _names(measurements: list[Measurement]) -> str:
    return ", ".join(f"{m.scenario.split(' (')[0]} ({m.workers}w)" for m in measurements)


def print_load_table(report: Report) -> None:
    head = (
        f"{'scenario':<16} {'workers':>7} {'HTTP req/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'errors':>6} {'floor TPS':>10} {'HTTP/floor':>10}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for m in report.measurements:
        floor = report.floors.get(m.scenario)
        ratio = f"{m.result.rate / floor.tps:10.0%}" if floor and floor.tps else f"{'-':>10}"
        print(
            f"{m.scenario:<16} {m.workers:>7} {m.result.rate:10.0f} {m.result.p50_ms:7.1f} "
            f"{m.result.p99_ms:7.1f} {m.result.errors:>6} "
            f"{f'{floor.tps:.0f}' if floor else '-':>10} {ratio}"
        )
    core = report.floors.get("order writes only")
    if core:
        for m in report.measurements:
            if m.scenario == "order placement":
                print(
                    f"order placement, {m.workers} worker(s), against the writes-only floor "
                    f"({core.tps:.0f} TPS): {m.result.rate / core.tps:.0%}"
                )
    print("\ngoals:")
    for m in report.measurements:
        floor = report.floors.get(m.scenario)
        if m.scenario == "order placement" and floor:
            ratio = m.result.rate / floor.tps
            verdict = "met" if ratio >= GOAL_ORDER_RATIO else "missed"
            print(
                f"  order placement >= {GOAL_ORDER_RATIO:.0%} of the floor, {m.workers} "
                f"worker(s): {ratio:.0%} -> {verdict}"
            )
        if m.scenario == "product list":
            verdict = "met" if m.result.p99_ms < GOAL_LIST_P99_MS else "missed"
            print(
                f"  product list p99 < {GOAL_LIST_P99_MS:.0f} ms, {m.workers} worker(s): "
                f"{m.result.p99_ms:.1f} ms -> {verdict}"
            )
    busy = [(f"'{m.scenario}' ({m.workers} worker(s))", m.idle_before) for m in report.measurements]
    busy += [(f"the '{name}' floor", f.idle_before) for name, f in report.floors.items()]
    for what, idle in busy:
        if idle < 0.85:
            print(
                f"note: before {what} only {idle:.0%} of the CPU was idle: something else was "
                "running, so its figures are low"
            )


def describe_machine(options: Options) -> None:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    tool = options.tool
    if tool == "auto":
        tool = "wrk" if loadgen.wrk_path() else "python"
    generator = {
        "wrk": f"wrk ({loadgen.wrk_path()}, one thread)",
        "python": "bench/load.py (asyncio, one process)",
    }[tool]
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; "
        f"load average {Path('/proc/loadavg').read_text().split()[0]}"
    )
    print(
        f"load generator: {generator}; {options.clients} clients, {options.duration:.0f} s "
        f"per scenario after {options.warmup:.0f} s of warm-up"
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    os.environ["SECRET_KEY"] = SECRET_KEY  # before anything reads the settings
    os.environ.setdefault("TECNOREV_ENV", "development")
    if options.tool == "wrk" and not loadgen.wrk_path():
        print("wrk is not installed (apt-get install wrk); use --load-generator python")
        return 2
    if floors_wanted(options) and shutil.which("pgbench") is None:
        print("pgbench is not installed (it comes with PostgreSQL's client tools)")
        return 2
    describe_machine(options)
    report = Report()
    with (
        throwaway_database(options.admin_url) as url,
        tempfile.TemporaryDirectory(prefix="tecnorev-bench-api-") as tmp,
    ):
        os.environ["DATABASE_URL"] = url
        started = time.perf_counter()
        migrate(url)
        data = load_data(url, products=options.products, customers=options.customers)
        print(
            f"data set: {data.products} products ({data.active} active, {data.images} images) "
            f"in {data.categories} categories, 1 branch holding {STOCK:,} units of each, "
            f"{len(data.customers)} customers; migrated and loaded in "
            f"{time.perf_counter() - started:.1f} s"
        )
        if "listings" in options.scenarios:
            started = time.perf_counter()
            data, added = load_listing_data(url, data, options.listing_rows)
            print(
                "for the listings: an admin and "
                + ", ".join(f"{n:,} {table} rows" for table, n in added.items())
                + f", inserted in {time.perf_counter() - started:.1f} s"
            )
        settle(url)
        log = Path(tmp) / "server.log"
        try:
            measure_http(options, url, data, report, log)
            if "listings" in options.scenarios:
                measure_reference(options, report, log)
            if floors_wanted(options):
                measure_floor(options, url, data, report)
            # last: the demo data they need must not change what the others measure
            if {"lock storm", "login flood"} & set(options.scenarios):
                started = time.perf_counter()
                demo = load_demo(url)
                print(f"\ndemo data loaded in {time.perf_counter() - started:.1f} s")
                if "lock storm" in options.scenarios:
                    measure_storms(options, url, data, demo, report, log)
                if "login flood" in options.scenarios:
                    measure_floods(options, url, demo, report, log)
        except Exception:
            if log.exists():
                print(f"server log:\n{log.read_text()[-4000:]}")
            raise
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
