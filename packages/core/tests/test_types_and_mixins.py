from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlmodel import Field

from tecnorev.core.db import create_db_engine
from tecnorev.core.mixins import NAMING_CONVENTION, AuditMixin
from tecnorev.core.types import UTCDateTime


def test_timestamps_come_back_timezone_aware_utc(database_url):
    md = sa.MetaData()
    events = sa.Table(
        "events", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UTCDateTime)
    )
    engine = create_db_engine(database_url)
    md.create_all(engine)
    lima = timezone(timedelta(hours=-5))
    with engine.begin() as conn:
        conn.execute(events.insert(), [{"id": 1, "at": datetime(2026, 3, 1, 7, 30, tzinfo=lima)}])
        at = conn.execute(sa.select(events.c.at)).scalar_one()
    engine.dispose()
    assert at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused(tmp_path):
    md = sa.MetaData()
    events = sa.Table("events", md, sa.Column("at", UTCDateTime))
    engine = create_db_engine(f"sqlite:///{tmp_path / 't.db'}")
    md.create_all(engine)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(events.insert(), [{"at": datetime(2026, 3, 1, 7, 30)}])
    engine.dispose()


def test_audit_columns_are_built_for_each_table():
    # two tables using the mixin must get columns of their own (no shared Column objects)

    class ProbeB(AuditMixin, table=True):
        __tablename__ = "audit_probe_b"
        id: int | None = Field(default=None, primary_key=True)

    class ProbeC(AuditMixin, table=True):
        __tablename__ = "audit_probe_c"
        id: int | None = Field(default=None, primary_key=True)

    b, c = ProbeB.__table__, ProbeC.__table__
    assert b.c.created_by_id is not c.c.created_by_id
    assert {fk.target_fullname for fk in c.c.updated_by_id.foreign_keys} == {"user.id"}
    assert isinstance(b.c.created_at.type, UTCDateTime)
    assert not b.c.created_at.nullable
    assert b.metadata.naming_convention == NAMING_CONVENTION


def test_money_goes_out_with_two_decimals_whether_read_as_a_decimal_or_as_text(database_url):
    from decimal import Decimal

    from pydantic import TypeAdapter

    from tecnorev.core.listing import money_text
    from tecnorev.core.web.types import MoneyOut

    md = sa.MetaData()
    prices = sa.Table(
        "prices",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("amount", sa.Numeric(12, 2)),
    )
    engine = create_db_engine(database_url)
    md.create_all(engine)
    stored = ["30", "7", "12.5", "0.1", "0.05", "0", "9999999999.99"]
    with engine.begin() as conn:
        conn.execute(prices.insert(), [{"amount": Decimal(a)} for a in stored])
        texts = (
            conn.execute(sa.select(money_text(prices.c.amount)).order_by(prices.c.id))
            .scalars()
            .all()
        )
    engine.dispose()
    # the text a listing reads is what the API sends, on either backend
    assert texts == ["30.00", "7.00", "12.50", "0.10", "0.05", "0.00", "9999999999.99"]

    out = TypeAdapter(list[MoneyOut])
    amounts = [Decimal("12.50"), Decimal("5"), Decimal("0.125"), Decimal("1E+2"), Decimal("0E-2")]
    assert out.dump_json(amounts + texts[:3]) == (
        b'["12.50","5.00","0.12","100.00","0.00","30.00","7.00","12.50"]'
    )
    # a response model still takes the decimals the ORM reads
    assert out.validate_python([Decimal("19.90"), 3]) == [Decimal("19.90"), 3]
