"""A listing's field of child values (``values_of``) is read in the page's own statement, on
both backends: each row's values, sorted, and an empty list for a row without any."""

from __future__ import annotations

import sqlalchemy as sa
from typing_extensions import TypedDict

from tecnorev.core.db import create_db_engine
from tecnorev.core.direct import Direct
from tecnorev.core.listing import Listing, ListingQuery, columns_of, values_of
from tecnorev.core.web.session import Reader, reading_engine

metadata = sa.MetaData()
shelf = sa.Table("values_shelf", metadata, sa.Column("id", sa.Integer, primary_key=True))
label = sa.Table(
    "values_label",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("shelf_id", sa.ForeignKey("values_shelf.id"), nullable=False),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
)


class ShelfSummary(TypedDict):
    id: int
    labels: list[str]
    weights: list[int]


shelves = Listing(
    "value_shelves",
    columns={
        **columns_of(shelf, "id"),
        "labels": values_of(sa.select(label.c.name).where(label.c.shelf_id == shelf.c.id)),
        "weights": values_of(sa.select(label.c.weight).where(label.c.shelf_id == shelf.c.id)),
    },
    item=ShelfSummary,
    sorts=("id",),
    default_sort="id",
)


def test_child_values_come_sorted_with_each_row_in_one_statement(database_url: str) -> None:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(shelf.insert(), [{"id": i} for i in range(1, 6)])
        connection.execute(
            label.insert(),
            [  # inserted out of order; shelf 3 has none
                {"shelf_id": 1, "name": "pears", "weight": 30},
                {"shelf_id": 1, "name": "apples", "weight": 7},
                {"shelf_id": 2, "name": "Zinc", "weight": 100},
                {"shelf_id": 1, "name": "figs", "weight": 12},
                {"shelf_id": 4, "name": "only", "weight": 1},
                {"shelf_id": 5, "name": "b", "weight": 2},
                {"shelf_id": 5, "name": "a", "weight": 2},
            ],
        )
    statements: list[str] = []
    reads = reading_engine(engine)
    sa.event.listen(reads, "before_cursor_execute", lambda *a: statements.append(a[2]))
    reader = Reader(reads)
    try:
        first, cursor = shelves.items(reader, ListingQuery(None, 3, "id", {}))
        rest, end = shelves.items(reader, ListingQuery(cursor, 3, "id", {}))
    finally:
        reader.close()
        reads.dispose()
        metadata.drop_all(engine)
        engine.dispose()
    assert end is None
    assert first + rest == [
        {"id": 1, "labels": ["apples", "figs", "pears"], "weights": [7, 12, 30]},
        {"id": 2, "labels": ["Zinc"], "weights": [100]},
        {"id": 3, "labels": [], "weights": []},
        {"id": 4, "labels": ["only"], "weights": [1]},
        {"id": 5, "labels": ["a", "b"], "weights": [2, 2]},
    ]
    assert len(statements) == 2  # one per page: no statement per row, nor per page's children


def test_values_of_reaches_the_driver_directly(postgres_url: str) -> None:
    # the page's statement keeps the direct path (no fallback to SQLAlchemy's execution)
    engine = create_db_engine(postgres_url)
    statement = shelves._statement("id", False, (), False)
    with engine.connect() as connection:
        assert Direct(statement)._compile(connection, {"_limit": 2}, many=False) is not None
    engine.dispose()
