"""Hot statements sent straight to psycopg2's cursor, compiled once by SQLAlchemy.

``Connection.execute`` costs about 30 µs of CPU per statement on top of the driver's own
work (execution context, parameter and result processing, events), and placing an order sends
nine statements.  A ``Direct`` statement is compiled once per dialect and set of parameter
names, and sent with the DBAPI cursor of the same connection, in the same transaction.

What reaches the database is what SQLAlchemy would send: parameters go through their types'
bind processors, result values through their result processors, an ``IN`` list is written
out by the driver, several rows go in one multi-row ``INSERT``.  Errors arrive as
SQLAlchemy's exceptions (``IntegrityError``, ``OperationalError`` ...), and a connection the
server dropped is invalidated.

Everything else takes ``Connection.execute``: other drivers (SQLite), a statement whose
columns get Python-side defaults (``default=``, ``onupdate=``), an empty ``IN`` list, and any
engine something watches (``echo``, statement listeners, error hooks), so loggers, tracers
and statement counters keep seeing every statement.

On a connection of an engine that asks for it (``prepare_on``: the API's reading pools, in
autocommit), a statement is also prepared on the server at its first run there and then
executed by name: PostgreSQL parses and plans it once per connection rather than at every
run (a third of the database's work on a listing page, measured with pgbench: 0.64 ms
against 0.98 ms for the user list's three statements).  Not in a transaction, so a
statement the server cannot prepare (a parameter whose type it cannot infer) runs as text
from then on, and nothing else is disturbed.  A statement a migration made stale (a column
it returns changed type) or that the connection lost is prepared again at once.  Not
through a transaction pooler, whose server connections change under the client.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

import sqlalchemy as sa

from tecnorev.core.types import UTCDateTime

_T = TypeVar("_T")
DRIVERS = ("psycopg2",)  # the drivers direct statements are sent to
_MANY_VALUES = " VALUES "
# the names this DBAPI connection has prepared (``PoolProxiedConnection.info``, which lives
# as long as the connection); absent: the connection does not prepare
_PREPARED = "tecnorev.prepared"
_UTC = "tecnorev.utc"  # the connection's time zone is UTC (``prepare_on``)
_names = itertools.count(1)
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


class Rows(Protocol):
    """What a statement returns: the part of ``CursorResult`` both paths provide."""

    @property
    def rowcount(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...
    def all(self) -> Sequence[Any]: ...
    def first(self) -> Any: ...
    def one(self) -> Any: ...
    def scalar_one(self) -> Any: ...
    def scalar_one_or_none(self) -> Any: ...


class _Fetched:
    """A direct statement's rows (plain tuples) and row count."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def one(self) -> tuple[Any, ...]:
        if len(self._rows) != 1:
            raise (sa.exc.MultipleResultsFound if self._rows else sa.exc.NoResultFound)(
                f"{len(self._rows)} rows where one was expected"
            )
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any:
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("more than one row")
        return self._rows[0][0] if self._rows else None


class _Compiled:
    """One statement compiled for one dialect and set of parameter names."""

    def __init__(
        self,
        sql: str,
        processors: dict[str, Callable[[Any], Any]],
        fixed: dict[str, Any],
        columns: list[sa.types.TypeEngine[Any]],
        expanding: frozenset[str] = frozenset(),
        computed: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        self.sql = sql
        self.processors = processors
        self.fixed = fixed
        self.computed = computed or {}  # values the statement computes per run (``callable_``)
        self.expanding = expanding  # ``IN`` parameters: a sequence, sent as a tuple
        self.columns = columns  # the result's column types, when the statement declares them
        # per result column, its conversion (None: none); known once a result was seen
        self.converters: list[Callable[[Any], Any] | None] | None = None
        self.active: list[tuple[int, Callable[[Any], Any]]] = []  # the columns converted
        self.active_in_utc = self.active  # those that still are on a connection set to UTC
        self.prepared = _prepared_forms(sql, self.expanding)  # None: never prepared

    def takes(self, params: Mapping[str, Any]) -> bool:
        """Whether these values can be sent directly: an empty ``IN`` list cannot (SQLAlchemy
        writes an expression that matches nothing)."""
        return all(len(params[name]) for name in self.expanding)

    def bind(self, params: Mapping[str, Any]) -> dict[str, Any]:
        bound = {**self.fixed, **params} if self.fixed else dict(params)
        for name, compute in self.computed.items():
            bound[name] = compute()
        for name, process in self.processors.items():
            if name in bound:
                if name in self.expanding:
                    bound[name] = [process(value) for value in bound[name]]
                else:
                    bound[name] = process(bound[name])
        for name in self.expanding:
            bound[name] = tuple(bound[name])  # psycopg2 writes a tuple as (a, b, c)
        return bound

    def convert(
        self, dialect: sa.Dialect, description: Any, rows: list[Any], *, utc: bool = False
    ) -> list[Any]:
        """Rows as SQLAlchemy would hand them over: each value through its column type's
        result processor, chosen (as SQLAlchemy does) from the type the server reported.
        ``utc``: the connection's time zone is UTC, so its timestamps come as ``UTCDateTime``
        would make them (psycopg2 gives an offset of zero ``timezone.utc``)."""
        if self.converters is None:
            if self.columns and len(self.columns) != len(description):
                raise RuntimeError(
                    f"{len(description)} columns for {len(self.columns)}: {self.sql}"
                )
            converters: list[Callable[[Any], Any] | None] = [
                column.dialect_impl(dialect).result_processor(dialect, reported[1])
                for column, reported in zip(self.columns, description, strict=False)
            ]
            # ``active`` first: another thread that sees ``converters`` set uses it at once
            self.active = [(i, c) for i, c in enumerate(converters) if c is not None]
            self.active_in_utc = [
                (i, c)
                for i, c in self.active
                if i >= len(self.columns) or not isinstance(self.columns[i], UTCDateTime)
            ]
            self.converters = converters
        active = self.active_in_utc if utc else self.active
        if not active:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for i, convert in active:  # only the columns that need it (a page's 3 of 12)
                values[i] = convert(values[i])
            converted.append(tuple(values))
        return converted


class Direct:
    """A Core statement built once (at import), run with ``run`` or ``run_many``."""

    def __init__(self, statement: sa.Executable) -> None:
        self.statement = statement
        # (dialect class, parameter names, many rows) -> compiled form, or None: not direct
        self._compiled: dict[tuple[type, frozenset[str], bool], _Compiled | None] = {}

    def run(self, connection: sa.Connection, params: Mapping[str, Any] | None = None) -> Rows:
        """Execute once with ``params``; the same as ``connection.execute(statement, params)``."""
        params = params or {}
        compiled = self._compile(connection, params, many=False)
        if compiled is None or _observed(connection) or not compiled.takes(params):
            return connection.execute(self.statement, dict(params))
        bound = _bound(compiled, params)

        def execute(cursor: Any) -> _Fetched:
            if not _run_prepared(connection, cursor, compiled, bound):
                cursor.execute(compiled.sql, bound)
            if cursor.description is None:
                return _Fetched([], cursor.rowcount)
            rows = compiled.convert(
                connection.dialect,
                cursor.description,
                cursor.fetchall(),
                utc=connection.connection.info.get(_UTC, False),
            )
            return _Fetched(rows, cursor.rowcount)

        return _with_cursor(connection, compiled.sql, bound, execute)

    def run_many(self, connection: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` (dicts with the same keys) in one multi-row ``INSERT``, as
        ``connection.execute(statement, rows)`` does; for an ``INSERT`` without ``RETURNING``."""
        if not rows:
            return
        compiled = self._compile(connection, rows[0], many=True)
        if (
            compiled is None
            or _observed(connection)
            or compiled.expanding
            or compiled.columns
            or _MANY_VALUES not in compiled.sql
            or " ON CONFLICT " in compiled.sql  # its VALUES list is not the statement's end
        ):
            connection.execute(self.statement, [dict(row) for row in rows])
            return
        head, _, values = compiled.sql.rpartition(_MANY_VALUES)
        batch = [_bound(compiled, row) for row in rows]
        from psycopg2.extras import execute_values

        def insert(cursor: Any) -> None:
            execute_values(cursor, head + " VALUES %s", batch, template=values, page_size=len(rows))

        _with_cursor(connection, compiled.sql, batch, insert)

    def _compile(
        self, connection: sa.Connection, params: Mapping[str, Any], *, many: bool
    ) -> _Compiled | None:
        key = (type(connection.dialect), frozenset(params), many)
        try:
            return self._compiled[key]
        except KeyError:
            pass
        compiled = None
        if connection.dialect.driver in DRIVERS:
            compiled = _direct_form(self.statement, connection.dialect, sorted(params), many)
        self._compiled[key] = compiled
        return compiled


def _direct_form(
    statement: sa.Executable, dialect: sa.Dialect, names: list[str], many: bool
) -> _Compiled | None:
    """The statement's SQL, parameter conversions and result types, or ``None`` if it needs
    SQLAlchemy's execution path (expanding parameters, escaped names, Python-side defaults)."""
    # ``for_executemany``: no implicit RETURNING of the primary key, which only
    # ``inserted_primary_key`` (not offered here) would read
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=dialect, column_keys=names, for_executemany=True
    )
    sql = compiled.string
    expanding = set()
    for bind in compiled.post_compile_params:
        # SQLAlchemy renders one placeholder per value at execution; psycopg2 renders a
        # tuple the same way, parentheses included
        placeholder = f"(__[POSTCOMPILE_{bind.key}])"
        if not bind.expanding or bind.literal_execute or placeholder not in sql:
            return None
        sql = sql.replace(placeholder, f"%({bind.key})s")
        expanding.add(bind.key)
    if (
        compiled.literal_execute_params
        or getattr(compiled, "escaped_bind_names", None)
        # column defaults computed in Python at execution (``default=``, ``onupdate=``)
        or getattr(compiled, "insert_prefetch", None)
        or getattr(compiled, "update_prefetch", None)
    ):
        return None
    fixed = {}  # values the statement carries itself (``column == 5``)
    computed = {}
    processors = {}
    for name, bind in compiled.binds.items():
        if name not in names:
            if bind.callable is not None:
                computed[name] = bind.callable
            elif bind.required:
                return None  # missing: SQLAlchemy says so in its words
            else:
                fixed[name] = bind.value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            processors[name] = process
    columns = [column.type for column in getattr(statement, "exported_columns", ())]
    return _Compiled(sql, processors, fixed, columns, frozenset(expanding), computed)


def _observed(connection: sa.Connection) -> bool:
    """Whether something watches this connection's statements (SQL logging by ``echo`` or
    the ``sqlalchemy.engine`` logger, execution listeners, error hooks): they then take
    SQLAlchemy's path, so every one of them is seen.  (Pool events, such as the
    ``connect`` hook of the project's engines, do not count.)"""
    return bool(
        connection._echo
        or connection._has_events
        or connection.engine._has_events
        or connection.dialect._has_events
    )


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters converted by their types; a value a type refuses (a naive timestamp,
    an unknown enum member) is a ``StatementError``, as from ``execute``."""
    try:
        return compiled.bind(params)
    except Exception as exc:
        raise sa.exc.StatementError(str(exc), compiled.sql, dict(params), exc) from exc


def _with_cursor(connection: sa.Connection, sql: str, params: Any, work: Callable[[Any], _T]) -> _T:
    """Run ``work`` with a cursor of ``connection``'s DBAPI connection, in the connection's
    transaction, turning driver errors into SQLAlchemy's and invalidating a connection the
    server dropped."""
    if not connection.in_transaction():
        connection.begin()  # what ``execute`` would have begun, so commit and rollback apply
    dialect = connection.dialect
    dbapi_connection = connection.connection.driver_connection
    assert dbapi_connection is not None  # a checked-out connection has its driver's
    cursor = dbapi_connection.cursor()
    try:
        return work(cursor)
    except dialect.loaded_dbapi.Error as exc:
        # SQLAlchemy's own handling, as for any statement: the exception class for the error,
        # and on a lost connection this one invalidated and the pool's older ones replaced at
        # their next checkout (the server restarted: they are all dead).  Other errors (a
        # value the driver cannot send) propagate as they would from ``execute``.
        connection._handle_dbapi_exception(exc, sql, params, cursor, None)
        raise  # not reached: the call above raises
    finally:
        if not dbapi_connection.closed:
            cursor.close()


def prepare_on(dbapi_connection: Any, record: Any) -> None:
    """A ``connect`` listener: this connection prepares the direct statements it runs (see
    the module), while it is in autocommit, and reads timestamps in UTC, as ``UTCDateTime``
    hands them over: its rows need no conversion per timestamp."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    if not dbapi_connection.autocommit:
        dbapi_connection.commit()  # session settings last beyond a transaction that ends
    record.info[_PREPARED] = set()
    record.info[_UTC] = True


class _Prepared(NamedTuple):
    name: str
    prepare: str  # PREPARE name AS ...
    execute: str  # EXECUTE name (%(a)s, ...)


def _prepared_forms(sql: str, expanding: frozenset[str]) -> _Prepared | None:
    """The statement's prepared forms for ``sql`` (psycopg2's ``%(name)s`` placeholders), or
    ``None`` when it cannot be prepared.  An ``IN`` list becomes ``= ANY($n)`` with an array,
    so pages of any size share one prepared statement."""
    for name in expanding:
        if f" NOT IN %({name})s" in sql or f" IN %({name})s" not in sql:
            return None
        sql = sql.replace(f" IN %({name})s", f" = ANY(%({name})s)")
    order: list[str] = []

    def positional(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"  # psycopg2's escaped percent: sent as is, without parameters
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    body = _PLACEHOLDER.sub(positional, sql)
    statement = f"tecnorev_{next(_names)}"
    arguments = ", ".join(f"%({name})s" for name in order)
    return _Prepared(
        statement,
        f"PREPARE {statement} AS {body}",
        f"EXECUTE {statement} ({arguments})" if order else f"EXECUTE {statement}",
    )


# what the server answers when a prepared statement has to be made again: a migration
# changed a column it returns ("cached plan must not change result type"), or the
# connection lost its statements (``DISCARD ALL``)
_STALE = {"0A000", "26000"}


def _run_prepared(
    connection: sa.Connection, cursor: Any, compiled: _Compiled, bound: dict[str, Any]
) -> bool:
    """Run ``compiled`` by name on a connection that prepares; ``False``: it does not (or
    the statement cannot be), run the text."""
    forms = compiled.prepared
    if forms is None:
        return False
    pooled = connection.connection
    prepared = pooled.info.get(_PREPARED)
    if prepared is None or not getattr(pooled.driver_connection, "autocommit", False):
        return False
    if forms.name not in prepared:
        if not _prepare(cursor, compiled, forms):
            return False
        prepared.add(forms.name)
    if compiled.expanding:
        bound = {k: _array(v) if k in compiled.expanding else v for k, v in bound.items()}
    try:
        cursor.execute(forms.execute, bound)
    except connection.dialect.loaded_dbapi.Error as exc:
        if getattr(exc, "pgcode", None) not in _STALE:
            raise
        # autocommit: the failure left nothing to roll back; made again, once
        if exc.pgcode == "0A000":
            cursor.execute(f"DEALLOCATE {forms.name}")
        cursor.execute(forms.prepare)
        cursor.execute(forms.execute, bound)
    return True


def _array(values: Sequence[Any]) -> Any:
    """An ``IN`` list bound as the one array parameter of ``= ANY($n)``: whole numbers as
    the array's text (``{1,2,3}``), which the server reads as the parameter's type, else a
    list.  psycopg2 adapts a list item by item, in Python: 48 µs for an order page's 51 ids,
    against 9 µs for their text (measured, best of five)."""
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    return list(values)


def _prepare(cursor: Any, compiled: _Compiled, forms: _Prepared) -> bool:
    try:
        cursor.execute(forms.prepare)
    except Exception as exc:
        if not str(getattr(exc, "pgcode", None) or "").startswith("42"):
            raise  # not the statement's fault (a lost connection): the caller's error
        # the server cannot prepare it (a parameter it cannot type): text from now on
        compiled.prepared = None
        return False
    return True
