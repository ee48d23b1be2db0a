"""A listing's timestamps are read as the text the API sends (``utc_text``), on both backends:
the same text pydantic writes for the ``datetime`` (UTC, ``Z``, microseconds only when there
are any), and pages sorted by a timestamp follow one another through their cursors."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from tecnorev.core.db import create_db_engine
from tecnorev.core.listing import Listing, ListingQuery, columns_of
from tecnorev.core.types import UTCDateTime
from tecnorev.core.web.session import Reader, reading_engine

metadata = sa.MetaData()
visit = sa.Table(
    "times_visit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("left_at", UTCDateTime(), nullable=True),
)


class VisitSummary(TypedDict):
    id: int
    at: dt.datetime
    left_at: dt.datetime | None


visits = Listing(
    "visits",
    columns=columns_of(visit, "id at left_at"),
    item=VisitSummary,
    sorts=("id", "at"),
    default_sort="id",
)

UTC = dt.UTC
MOMENTS = [
    dt.datetime(2026, 12, 7, 16, 19, 32, tzinfo=UTC),  # no microseconds: none written
    dt.datetime(2026, 12, 7, 16, 19, 32, 5, tzinfo=UTC),
    dt.datetime(2026, 12, 7, 16, 19, 32, 500000, tzinfo=UTC),
    # given in another zone: stored and sent as UTC
    dt.datetime(2026, 12, 7, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.datetime(1999, 1, 2, 3, 4, 5, tzinfo=UTC),
]


def test_timestamps_are_sent_as_pydantic_writes_them(database_url: str) -> None:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            visit.insert(),
            [
                {"id": i, "at": moment, "left_at": moment if i % 2 else None}
                for i, moment in enumerate(MOMENTS, 1)
            ],
        )
    reads = reading_engine(engine)
    reader = Reader(reads)
    try:
        by_id = json.loads(visits.page_json(reader, ListingQuery(None, 50, "id", {})))
        pages = []
        for sort in ("at", "-at"):
            cursor, seen = None, []
            while True:
                page = json.loads(visits.page_json(reader, ListingQuery(cursor, 2, sort, {})))
                seen += [row["id"] for row in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            pages.append(seen)
    finally:
        reader.close()
        reads.dispose()
        metadata.drop_all(engine)
        engine.dispose()
    written = TypeAdapter(dt.datetime)
    assert by_id["items"] == [
        {
            "id": i,
            "at": written.dump_python(moment, mode="json"),
            "left_at": written.dump_python(moment, mode="json") if i % 2 else None,
        }
        for i, moment in enumerate((m.astimezone(UTC) for m in MOMENTS), 1)
    ]
    assert by_id["items"][0]["at"] == "2026-12-07T16:19:32Z"
    assert by_id["items"][3]["at"] == "2026-12-07T21:59:59.999999Z"
    in_order = [i for _, i in sorted((m, i) for i, m in enumerate(MOMENTS, 1))]
    assert pages == [in_order, in_order[::-1]]
