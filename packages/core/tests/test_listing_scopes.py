"""A listing's scopes (what a caller may see) are bound per request into a statement compiled
once per shape: every caller gets exactly their rows, and paging stays within them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from typing_extensions import TypedDict

from tecnorev.core.db import create_db_engine
from tecnorev.core.listing import Listing, ListingQuery, columns_of

metadata = sa.MetaData()
note = sa.Table(
    "scoped_note",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.Integer, nullable=False),
    sa.Column("shared", sa.Boolean, nullable=False),
)


class NoteSummary(TypedDict):
    id: int
    owner: int
    shared: bool


notes = Listing(
    "scoped_notes",
    columns=columns_of(note, "id owner shared"),
    item=NoteSummary,
    sorts=("id",),
    default_sort="id",
    scopes={"reader": lambda reader: sa.or_(note.c.owner == reader, note.c.shared)},
)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            note.insert(),
            [{"id": i, "owner": i % 3, "shared": i % 5 == 0} for i in range(1, 31)],
        )
    yield engine
    metadata.drop_all(engine)
    engine.dispose()


def _all_pages(session: Session, scope: dict[str, int] | None) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        items, cursor = notes.items(session, ListingQuery(cursor, 4, "id", {}), scope)
        seen += [item["id"] for item in items]
        if cursor is None:
            return seen


def test_each_reader_pages_through_exactly_their_rows(engine):
    with Session(engine) as session:
        for reader in (0, 1, 2, 7):
            expected = [i for i in range(1, 31) if i % 3 == reader or i % 5 == 0]
            assert _all_pages(session, {"reader": reader}) == expected
        assert _all_pages(session, None) == list(range(1, 31))
    # one statement per shape (scoped or not, first page or not), whatever the reader
    assert len(notes._statements) == 4


def test_an_undeclared_scope_is_a_programming_error(engine):
    with Session(engine) as session, pytest.raises(ValueError, match="no scope 'owner'"):
        notes.items(session, ListingQuery(None, 4, "id", {}), {"owner": 1})
