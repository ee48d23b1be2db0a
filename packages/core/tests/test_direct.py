"""``Direct`` statements: on psycopg2 they bypass SQLAlchemy's execution path and still
answer, convert and fail exactly as ``Connection.execute`` does; elsewhere they are
``Connection.execute``."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tecnorev.core.db import create_db_engine, is_unique_violation
from tecnorev.core.direct import Direct, prepare_on
from tecnorev.core.types import UTCDateTime


class Colour(enum.StrEnum):
    RED = "RED"
    BLUE = "BLUE"


metadata = sa.MetaData()
thing = sa.Table(
    "direct_thing",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(20), nullable=False, unique=True),
    sa.Column("price", sa.Numeric(12, 2), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("colour", sa.Enum(Colour, native_enum=False, length=10), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("touched", UTCDateTime, nullable=True, onupdate=lambda: datetime.now(UTC)),
)
c = thing.c

INSERT = Direct(sa.insert(thing))
INSERT_RETURNING = Direct(sa.insert(thing).returning(c.id))
BY_ID = Direct(
    sa.select(c.id, c.code, c.price, c.active).where(c.id == sa.bindparam("t_id", type_=sa.Integer))
)
ACTIVE_CODES = Direct(sa.select(c.code).where(c.active == sa.true(), c.price >= 5).order_by(c.id))
RAISE = Direct(
    sa.update(thing)
    .where(c.code == sa.bindparam("t_code"))
    .values(price=c.price + sa.bindparam("t_by", type_=c.price.type), touched=sa.func.now())
)
# results converted by their types (an enum, UTC timestamps)
COLOUR_AND_TIME = Direct(sa.select(c.colour, c.at).where(c.id == sa.bindparam("t_id")))
# what the direct path leaves to SQLAlchemy
IN_IDS = Direct(sa.select(c.code).where(c.id.in_(sa.bindparam("t_ids", expanding=True))))
IN_CODES = Direct(
    sa.select(c.id).where(c.code.in_(sa.bindparam("t_codes", expanding=True))).order_by(c.id)
)
RENAME = Direct(
    sa.update(thing).where(c.id == sa.bindparam("t_id")).values(code=sa.bindparam("t_new"))
)
BY_CODE = Direct(sa.text("SELECT id, price FROM direct_thing WHERE code = :code"))
# a value the statement computes each time it runs (``bindparam(callable_=...)``)
_label = {"value": "EUR"}
WITH_LABEL = Direct(
    sa.select(
        c.code, sa.bindparam("label", callable_=lambda: _label["value"], type_=sa.String(3))
    ).where(c.id == sa.bindparam("t_id"))
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def row(code: str, price: str = "9.99", **extra: object) -> dict[str, object]:
    values = {"code": code, "price": Decimal(price), "active": True, "colour": Colour.RED}
    return {**values, "at": NOW, **extra}


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def executed(monkeypatch) -> list[object]:
    """The statements that went through ``Connection.execute`` (SQLAlchemy's path)."""
    statements: list[object] = []
    execute = sa.engine.Connection.execute

    def spy(self, statement, *args, **kwargs):
        statements.append(statement)
        return execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(sa.engine.Connection, "execute", spy)
    return statements


def is_direct(engine: sa.Engine) -> bool:
    return engine.dialect.driver == "psycopg2"


def test_rows_and_counts_match_sqlalchemy(engine, executed):
    with engine.begin() as connection:
        new_id = INSERT_RETURNING.run(connection, row("A-1", "12.50")).scalar_one()
        INSERT.run_many(connection, [row("A-2", "1.00"), row("A-3", "7.25", active=False)])
        direct = BY_ID.run(connection, {"t_id": new_id}).all()
        assert direct == [(new_id, "A-1", Decimal("12.50"), True)]
        assert ACTIVE_CODES.run(connection).all() == [("A-1",)]  # true() and 5 travel along
        assert IN_IDS.run(connection, {"t_ids": [new_id, new_id + 1, -5]}).all() == [
            ("A-1",),
            ("A-2",),
        ]
        assert BY_ID.run(connection, {"t_id": -1}).scalar_one_or_none() is None
        with pytest.raises(sa.exc.NoResultFound):
            BY_ID.run(connection, {"t_id": -1}).scalar_one()
        assert RAISE.run(connection, {"t_code": "A-2", "t_by": Decimal("0.50")}).rowcount == 1
        assert RAISE.run(connection, {"t_code": "nope", "t_by": Decimal("1")}).rowcount == 0
        assert BY_CODE.run(connection, {"code": "A-2"}).first()[1] == Decimal("1.50")
        sent = len(executed)
        # SQLAlchemy's own answer is the same
        assert direct[0] == tuple(connection.execute(BY_ID.statement, {"t_id": new_id}).one())
    # on psycopg2 none of them took SQLAlchemy's path
    assert sent == (0 if is_direct(engine) else 10)


def test_parameters_and_results_go_through_their_types(engine):
    with engine.begin() as connection:
        INSERT.run_many(connection, [row("E-1", colour=Colour.BLUE), row("E-2")])
        stored = connection.execute(sa.select(c.id, c.code, c.colour, c.at).order_by(c.code))
        (first_id, *first), _ = stored.all()
        assert first == ["E-1", Colour.BLUE, NOW]
        colour, at = COLOUR_AND_TIME.run(connection, {"t_id": first_id}).one()
    assert colour is Colour.BLUE
    assert at == NOW and at.tzinfo is UTC


def test_a_computed_value_is_computed_at_each_run(engine, executed, monkeypatch):
    with engine.begin() as connection:
        new_id = INSERT_RETURNING.run(connection, row("C-1")).scalar_one()
        executed.clear()
        assert WITH_LABEL.run(connection, {"t_id": new_id}).one() == ("C-1", "EUR")
        monkeypatch.setitem(_label, "value", "BRL")
        assert WITH_LABEL.run(connection, {"t_id": new_id}).one() == ("C-1", "BRL")
    assert executed == ([] if is_direct(engine) else [WITH_LABEL.statement] * 2)


def test_what_needs_sqlalchemy_goes_through_it(engine, executed):
    with engine.begin() as connection:
        first = INSERT_RETURNING.run(connection, row("F-1")).scalar_one()
        executed.clear()
        assert IN_IDS.run(connection, {"t_ids": []}).all() == []  # an empty IN list
        assert RENAME.run(connection, {"t_id": first, "t_new": "F-2"}).rowcount == 1
        touched = connection.execute(sa.select(c.touched).where(c.id == first)).scalar_one()
    assert executed[:2] == [IN_IDS.statement, RENAME.statement]
    assert touched is not None  # the column's onupdate ran


def test_a_statement_listener_sees_every_statement(engine):
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    with engine.begin() as connection:
        new_id = INSERT_RETURNING.run(connection, row("L-1")).scalar_one()
        INSERT.run_many(connection, [row("L-2"), row("L-3")])
        assert BY_ID.run(connection, {"t_id": new_id}).one()[1] == "L-1"
    statements = [s for s in seen if not s.startswith("BEGIN")]
    assert [s.split()[0] for s in statements] == ["INSERT", "INSERT", "SELECT"]


def test_a_constraint_violation_is_sqlalchemys_error_and_the_connection_recovers(engine):
    with engine.connect() as connection:
        INSERT.run(connection, row("U-1"))
        with pytest.raises(sa.exc.IntegrityError) as refused:
            INSERT.run(connection, row("U-1"))
        assert is_unique_violation(refused.value)
        connection.rollback()
        INSERT.run(connection, row("U-2"))
        connection.commit()
        assert connection.execute(sa.select(sa.func.count()).select_from(thing)).scalar() == 1


def test_one_multi_row_insert(postgres_url):
    engine = create_db_engine(postgres_url)
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE direct_statements (n integer)")
        connection.exec_driver_sql(
            "CREATE FUNCTION direct_count() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO direct_statements VALUES (1); RETURN NULL; END $$"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER direct_count AFTER INSERT ON direct_thing "
            "FOR EACH STATEMENT EXECUTE FUNCTION direct_count()"
        )
        INSERT.run_many(connection, [row(f"M-{n}") for n in range(25)])
        statements = connection.exec_driver_sql("SELECT count(*) FROM direct_statements").scalar()
        rows = connection.execute(sa.select(sa.func.count()).select_from(thing)).scalar()
    engine.dispose()
    assert (statements, rows) == (1, 25)


def test_a_value_its_type_refuses_is_a_statement_error(engine):
    refused = pytest.raises(sa.exc.StatementError, match="naive datetime")
    with engine.connect() as connection, refused:
        INSERT.run(connection, row("N-1", at=datetime(2026, 1, 2)))


def test_a_dropped_connection_is_invalidated_and_the_pool_renewed(postgres_url):
    # no ping before checkout: what replaces dead connections is the invalidation itself
    engine = create_db_engine(postgres_url, pool_size=2, max_overflow=0, pool_pre_ping=False)
    metadata.create_all(engine)
    killer = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)

    def backend(connection: sa.Connection) -> int:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    with engine.connect() as first, engine.connect() as second:
        before = {backend(first), backend(second)}
        second.rollback()
    with engine.connect() as connection:
        pid = backend(connection)
        with killer.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.OperationalError) as lost:
            BY_ID.run(connection, {"t_id": 1})
        assert lost.value.connection_invalidated
        assert connection.invalidated
    # the server went away once: every connection pooled before it is replaced, not only
    # the one that failed
    with engine.connect() as first, engine.connect() as second:
        after = {backend(first), backend(second)}
        assert BY_ID.run(first, {"t_id": 1}).all() == []
    assert not after & before
    engine.dispose()
    killer.dispose()


# --- prepared on the server ----------------------------------------------------------------

SUM = Direct(sa.text("SELECT :a + :b AS total"))  # the server cannot type $1 + $2


def _prepared(connection: sa.Connection) -> list[str]:
    rows = connection.exec_driver_sql("SELECT statement FROM pg_prepared_statements")
    return sorted(statement for (statement,) in rows)


@pytest.fixture
def preparing(postgres_url: str) -> Iterator[sa.Engine]:
    """An engine as the API's reading pools are: autocommit, preparing what it runs."""
    writer = create_db_engine(postgres_url)
    metadata.create_all(writer)
    with writer.begin() as connection:
        INSERT.run_many(connection, [row(f"P-{n}", f"{n}.50") for n in range(1, 6)])
    engine = create_db_engine(
        postgres_url, isolation_level="AUTOCOMMIT", pool_size=1, pool_pre_ping=False
    )
    sa.event.listen(engine, "connect", prepare_on)
    yield engine
    engine.dispose()
    writer.dispose()


def test_a_reading_connection_prepares_each_statement_once_and_answers_the_same(preparing):
    with preparing.connect() as connection:
        ids = [i for (i,) in connection.exec_driver_sql("SELECT id FROM direct_thing ORDER BY id")]
        for _ in range(3):  # the first run prepares, the next ones execute it by name
            for t_id in ids:
                direct = BY_ID.run(connection, {"t_id": t_id}).all()
                assert direct == connection.execute(BY_ID.statement, {"t_id": t_id}).all()
        # an IN list of any length is one array parameter: one statement for every page
        assert IN_IDS.run(connection, {"t_ids": ids[:1]}).all() == [("P-1",)]
        assert IN_IDS.run(connection, {"t_ids": ids}).all() == [(f"P-{n}",) for n in range(1, 6)]
        # whole numbers go as the array's text, other values as a list: the same rows
        assert IN_CODES.run(connection, {"t_codes": ["P-4", "P-2", "{x,'}"]}).all() == [
            (ids[1],),
            (ids[3],),
        ]
        assert [at for _, at in COLOUR_AND_TIME.run(connection, {"t_id": ids[0]})] == [NOW]
        prepared = _prepared(connection)
    assert len(prepared) == 4, prepared
    assert any("= ANY($1)" in statement for statement in prepared), prepared
    # the same connection, back from the pool, keeps them: nothing prepared twice
    with preparing.connect() as connection:
        assert BY_ID.run(connection, {"t_id": ids[0]}).first()[1] == "P-1"
        assert len(_prepared(connection)) == 4


def test_timestamps_come_in_utc_on_a_reading_connection_whatever_the_servers_zone(
    postgres_url,
):
    # the database's zone is not UTC: a preparing connection sets its own, and its rows skip
    # the per-timestamp conversion; another connection's still convert them.  Both hand over
    # the same instants, in UTC (an API answer says ...Z either way).
    writer = create_db_engine(postgres_url)
    with writer.connect() as connection:
        database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
        connection.exec_driver_sql(f"ALTER DATABASE \"{database}\" SET timezone = 'America/Lima'")
        connection.commit()
    writer.dispose()
    writer = create_db_engine(postgres_url)
    metadata.create_all(writer)
    with writer.begin() as connection:
        assert connection.exec_driver_sql("SHOW timezone").scalar_one() == "America/Lima"
        INSERT.run_many(connection, [row("T-1")])
        t_id = connection.exec_driver_sql("SELECT id FROM direct_thing").scalar_one()
        elsewhere = COLOUR_AND_TIME.run(connection, {"t_id": t_id}).one()
    reading = create_db_engine(postgres_url, isolation_level="AUTOCOMMIT", pool_size=1)
    sa.event.listen(reading, "connect", prepare_on)
    try:
        with reading.connect() as connection:
            assert connection.exec_driver_sql("SHOW timezone").scalar_one() == "UTC"
            read = [COLOUR_AND_TIME.run(connection, {"t_id": t_id}).one() for _ in range(2)]
    finally:
        reading.dispose()
        writer.dispose()
    for colour, at in [elsewhere, *read]:
        assert colour is Colour.RED  # other columns still convert
        assert at == NOW and at.tzinfo is UTC


def test_a_statement_the_server_cannot_prepare_runs_as_text(preparing):
    with preparing.connect() as connection:
        assert SUM.run(connection, {"a": 2, "b": 3}).scalar_one() == 5
        assert SUM.run(connection, {"a": 4, "b": 3}).scalar_one() == 7
        assert _prepared(connection) == []


def test_a_connection_in_a_transaction_never_prepares(postgres_url):
    engine = create_db_engine(postgres_url, pool_size=1)
    sa.event.listen(engine, "connect", prepare_on)
    metadata.create_all(engine)
    try:
        with engine.begin() as connection:
            assert BY_ID.run(connection, {"t_id": -1}).all() == []
            assert _prepared(connection) == []
    finally:
        engine.dispose()


def test_a_reconnected_connection_prepares_again(preparing, postgres_url):
    killer = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    with preparing.connect() as connection:
        assert BY_ID.run(connection, {"t_id": -1}).all() == []
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with killer.connect() as other:
        other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    with preparing.connect() as connection, pytest.raises(sa.exc.OperationalError):
        BY_ID.run(connection, {"t_id": -1})
    # the new server connection has none of the old one's statements: prepared anew
    with preparing.connect() as connection:
        assert BY_ID.run(connection, {"t_id": -1}).all() == []
        assert len(_prepared(connection)) == 1
    killer.dispose()


def test_a_statement_is_prepared_again_after_a_migration_or_a_discard(preparing):
    admin = create_db_engine(str(preparing.url.render_as_string(hide_password=False)))
    with preparing.connect() as connection:
        t_id = connection.exec_driver_sql("SELECT min(id) FROM direct_thing").scalar()
        assert BY_ID.run(connection, {"t_id": t_id}).first()[1] == "P-1"
        # a migration changes a column the prepared statement returns
        with admin.begin() as other:
            other.exec_driver_sql("ALTER TABLE direct_thing ALTER COLUMN code TYPE varchar(40)")
        assert BY_ID.run(connection, {"t_id": t_id}).first()[1] == "P-1"
        # something discards the connection's statements (a pooler's DISCARD ALL)
        connection.exec_driver_sql("DEALLOCATE ALL")
        assert BY_ID.run(connection, {"t_id": t_id}).first()[1] == "P-1"
        assert len(_prepared(connection)) == 1
    admin.dispose()
