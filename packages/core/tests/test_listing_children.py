"""A listing's children (``Children``: an order's items) come with each row of a page, on
both backends, read by one more statement for the whole page: in their order, as the API
sends them (money as text), and an empty list for a row without any."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal

import sqlalchemy as sa
from typing_extensions import TypedDict

from tecnorev.core.db import create_db_engine
from tecnorev.core.listing import Children, Listing, ListingQuery, columns_of
from tecnorev.core.web.session import Reader, reading_engine
from tecnorev.core.web.types import MoneyOut

metadata = sa.MetaData()
basket = sa.Table(
    "children_basket",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
)
line = sa.Table(
    "children_line",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("basket_id", sa.ForeignKey("children_basket.id"), nullable=False),
    sa.Column("fruit", sa.String(20), nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
)


class LineSummary(TypedDict):
    fruit: str
    price: MoneyOut


class BasketSummary(TypedDict):
    id: int
    total: MoneyOut
    lines: list[LineSummary]


baskets = Listing(
    "children_baskets",
    columns=columns_of(basket, "id total"),
    item=BasketSummary,
    sorts=("id", "total"),
    default_sort="id",
    children=Children(
        "lines",
        parent=line.c.basket_id,
        columns=columns_of(line, "fruit price"),
        order_by=(line.c.fruit,),
    ),
)

# totals whose text sorts otherwise than their values ("10.00" < "9.50" as text)
TOTALS = {1: "9.50", 2: "10.00", 3: "100.25", 4: "0.75", 5: "20.00"}
LINES = [  # inserted out of their order; basket 3 has none
    (1, "pear", "3.00"),
    (1, "apple", "6.50"),
    (2, "fig", "10.00"),
    (4, "lime", "0.75"),
    (5, "plum", "12.00"),
    (5, "kiwi", "8.00"),
]


def _expected(basket_id: int) -> dict[str, object]:
    lines = sorted((fruit, price) for b, fruit, price in LINES if b == basket_id)
    return {
        "id": basket_id,
        "total": TOTALS[basket_id],
        "lines": [{"fruit": fruit, "price": price} for fruit, price in lines],
    }


def test_children_come_with_each_row_in_their_order_page_after_page(database_url: str) -> None:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            basket.insert(), [{"id": i, "total": Decimal(t)} for i, t in TOTALS.items()]
        )
        connection.execute(
            line.insert(),
            [{"basket_id": b, "fruit": f, "price": Decimal(p)} for b, f, p in LINES],
        )
    statements: list[str] = []
    reads = reading_engine(engine)
    sa.event.listen(reads, "before_cursor_execute", lambda *a: statements.append(a[2]))
    reader = Reader(reads)
    pages: dict[str, list[dict[str, object]]] = {}
    try:
        for sort in ("id", "-total", "total"):
            cursor, rows = None, []
            while True:
                page = json.loads(baskets.page_json(reader, ListingQuery(cursor, 2, sort, {})))
                rows += page["items"]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            pages[sort] = rows
    finally:
        reader.close()
        reads.dispose()
        metadata.drop_all(engine)
        engine.dispose()
    assert pages["id"] == [_expected(i) for i in (1, 2, 3, 4, 5)]
    by_total = sorted(TOTALS, key=lambda i: Decimal(TOTALS[i]))
    assert pages["total"] == [_expected(i) for i in by_total]
    assert pages["-total"] == [_expected(i) for i in reversed(by_total)]
    # three pages of each sort, two statements each: not one more per row
    assert len(statements) == 3 * 3 * 2


def test_the_children_statement_reaches_the_driver_directly(postgres_url: str) -> None:
    # no fallback to SQLAlchemy's execution for the children's statement either
    engine = create_db_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(basket.insert(), [{"id": 1, "total": Decimal("1.00")}])
    reader = Reader(reading_engine(engine))
    try:
        items, _ = baskets.items(reader, ListingQuery(None, 2, "id", {}))
        assert items == [{"id": 1, "total": "1.00", "lines": []}]
        statement = baskets._children_statement
        assert statement is not None
        with engine.connect() as connection:
            assert statement._compile(connection, {"_parents": [1]}, many=False) is not None
    finally:
        reader.close()
        metadata.drop_all(engine)
        engine.dispose()


class FruitOnly(TypedDict):
    fruit: str


class BasketId(TypedDict):
    id: int
    lines: list[FruitOnly]


# reads what ``baskets`` reads, but its items do not show the total, nor each line's price
narrow = dataclasses.replace(baskets, name="children_narrow", item=BasketId, sorts=("id",))


def test_a_page_shows_only_what_its_items_show(database_url: str) -> None:
    assert baskets._writer.fast  # written by orjson: the items show every column read
    assert not narrow._writer.fast  # the adapter leaves out what they do not
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(basket.insert(), [{"id": 1, "total": Decimal("2.00")}])
        connection.execute(line.insert(), [{"basket_id": 1, "fruit": "fig", "price": 2}])
    reader = Reader(reading_engine(engine))
    try:
        page = narrow.page_json(reader, ListingQuery(None, 2, "id", {}))
        one = narrow.one_json(reader, {})
    finally:
        reader.close()
        metadata.drop_all(engine)
        engine.dispose()
    assert page == b'{"items":[{"id":1,"lines":[{"fruit":"fig"}]}],"next_cursor":null}'
    assert one == b'{"id":1,"lines":[{"fruit":"fig"}]}'
