"""One listing contract for every collection of the API.

A ``Listing`` declares a collection once: the columns a page shows (labelled as its output
fields), the fields it may be sorted by, its filters and, optionally, the rows of a child
table each item carries as a list (``Children``: an order's items).  From that it gives

* ``Listing.query``: a FastAPI dependency taking ``cursor``, ``limit``, ``sort`` and the
  filters as query parameters, documented and validated (a sort it does not allow, a filter
  of the wrong type, a cursor it did not hand out: 422);
* ``Listing.page`` / ``Listing.page_json``: one page, read by keyset pagination on
  ``(sort field, key)``, so every page is an index range scan whatever its depth.  The
  statement is built once per shape (sort, filters present, cursor or not) with its values
  bound at execution; rows go out as plain dicts serialized once (``tecnorev.core.rows``).
  Children come in one more statement for the whole page: not one per row, and not in
  the page's own statement, which costs PostgreSQL more (see ``Listing._read_children``);
* ``Listing.one_json``: one item, chosen by filters (its key), read and serialized as a
  page's items are: a route showing one item takes the same path.

Every page is ``{"items": [...], "next_cursor": str | null}``.  A cursor is opaque to
clients (base64url JSON of the sort and the last row's values) and valid only with the sort
that produced it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import partial
from typing import Annotated, Any, Literal, cast, get_args, get_type_hints

import sqlalchemy as sa
from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.compiler import compiles
from typing_extensions import TypedDict

from tecnorev.core.direct import Direct
from tecnorev.core.errors import RuleViolation
from tecnorev.core.rows import JsonWriter, row_dict
from tecnorev.core.settings import store_currency
from tecnorev.core.web.session import Connectable, run_read
from tecnorev.core.web.types import LimitQuery, MoneyOut, text

MAX_CURSOR = 200
DEFAULT_LIMIT = 50


class InvalidCursor(RuleViolation):
    code = "invalid_cursor"


@dataclass(frozen=True)
class Filter:
    """A query parameter narrowing a listing.

    ``where`` receives the bound parameter standing for the value and returns the condition;
    ``bind`` turns the value given into what is bound (a LIKE pattern, say); a value for which
    ``applies`` is false does not filter (an empty search)."""

    name: str
    annotation: Any
    where: Callable[[sa.BindParameter[Any]], sa.ColumnElement[bool]]
    description: str
    bind: Callable[[Any], Any] = lambda value: value
    applies: Callable[[Any], bool] = lambda value: value is not None
    type_: sa.types.TypeEngine[Any] | None = None


def equals(name: str, column: sa.ColumnElement[Any], annotation: Any, description: str) -> Filter:
    return Filter(name, annotation, lambda v: column == v, description, type_=column.type)


def at_least(name: str, column: sa.ColumnElement[Any], annotation: Any, description: str) -> Filter:
    return Filter(name, annotation, lambda v: column >= v, description, type_=column.type)


def at_most(name: str, column: sa.ColumnElement[Any], annotation: Any, description: str) -> Filter:
    return Filter(name, annotation, lambda v: column <= v, description, type_=column.type)


def before(name: str, column: sa.ColumnElement[Any], annotation: Any, description: str) -> Filter:
    return Filter(name, annotation, lambda v: column < v, description, type_=column.type)


def item_of(model: type[BaseModel], **fields: Any) -> type:
    """A listing's item type showing what ``model`` shows (its fields, in order, with their
    types as declared), ``fields`` replacing some: a route declared with ``model`` and read
    through a listing sends the same JSON, and follows the model when it changes."""
    hints = get_type_hints(model, include_extras=True)
    shown = {name: fields.get(name, hints[name]) for name in model.model_fields}
    return TypedDict(f"{model.__name__}Item", shown)  # type: ignore[operator]


def mapped_columns(entity: type, names: Iterable[str]) -> dict[str, sa.ColumnElement[Any]]:
    """The columns of the mapped class ``entity`` behind its attributes ``names``: by the
    attribute, which a release may keep while it renames the column under it."""
    mapper: sa.orm.Mapper[Any] = sa.inspect(entity)
    return {name: mapper.columns[name] for name in names}


def columns_of(table: sa.Table, names: str) -> dict[str, sa.ColumnElement[Any]]:
    """``{"a": table.c.a, ...}`` for the space-separated ``names``: a page's output fields."""
    return {name: table.c[name] for name in names.split()}


def store_currency_column() -> sa.BindParameter[str]:
    """The store's currency (``TECNOREV_CURRENCY``) as an output field beside prices: a value
    bound each time a page is read, so a cached statement follows the setting."""
    return sa.bindparam("store_currency", callable_=store_currency, type_=sa.String(3))


@dataclass(frozen=True)
class Children:
    """Rows of a child table each item of a page carries, as a list of dicts under
    ``field`` (an order's items): ``parent`` is the child's column holding the item's key,
    ``columns`` map the children's output fields to their columns, ``order_by`` orders them
    within an item.  Shown as the item type's ``field`` says (``list[ChildSummary]``)."""

    field: str
    parent: sa.ColumnElement[Any]
    columns: Mapping[str, sa.ColumnElement[Any]]
    order_by: Sequence[sa.ColumnElement[Any]]


@dataclass(frozen=True)
class ListingQuery:
    """What a client asked of a listing, validated."""

    cursor: str | None
    limit: int
    sort: str
    filters: Mapping[str, Any]


Scope = Callable[[sa.BindParameter[Any]], sa.ColumnElement[bool]]


@dataclass
class Listing:
    """A collection's listing: see the module's docstring.

    ``columns`` map output fields to columns (or expressions); ``key`` names the unique,
    never-null field that breaks ties and ends every sort; ``sorts`` the fields a client may
    sort by (each ascending ``x`` or descending ``-x``), which must be NOT NULL columns;
    ``unique`` the sort fields whose values are unique and never null (a SKU, an email): sorted
    by one of them, a page needs no tiebreak, so the column's own unique index serves it;
    ``select_from`` the FROM clause when the columns span tables; ``where`` conditions
    every page has; ``scopes`` conditions a route applies for its caller (what they may see),
    each made from the parameter that stands for its value of the request, so that a scoped
    page is compiled once too (``page(..., scope={"viewer": user_id})``); ``children`` the
    rows of a child table each item carries (``Children``).
    """

    name: str
    columns: Mapping[str, sa.ColumnElement[Any]]
    item: type
    sorts: Sequence[str]
    default_sort: str
    key: str = "id"
    unique: frozenset[str] = frozenset()
    filters: Sequence[Filter] = ()
    select_from: sa.FromClause | None = None
    where: Sequence[sa.ColumnElement[bool]] = ()
    scopes: Mapping[str, Scope] = field(default_factory=dict)
    children: Children | None = None
    description: str = ""
    page_type: Any = field(init=False, repr=False)  # for response_model: what clients see
    _writer: JsonWriter = field(init=False, repr=False)
    _item_writer: JsonWriter = field(init=False, repr=False)
    _statements: dict[tuple[Any, ...], Direct] = field(init=False, repr=False, default_factory=dict)
    _children_statement: Direct | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        for name in (*self.sorts, self.key):
            if name not in self.columns:
                raise ValueError(f"listing {self.name!r}: {name!r} is not one of its columns")
            column = self.columns[name]
            if getattr(column, "nullable", False):
                # keyset comparisons skip NULLs: a nullable sort would lose rows
                raise ValueError(f"listing {self.name!r}: sort field {name!r} may be null")
        self.unique = frozenset({*self.unique, self.key})
        if self.default_sort.lstrip("-") not in self.sorts:
            raise ValueError(f"listing {self.name!r}: default sort {self.default_sort!r}")
        self.page_type = _page_type(self.name, self.item)
        self._selected, sent = _read_as_sent(self.columns, self.item)
        self._child_selected: dict[str, sa.ColumnElement[Any]] = {}
        if self.children is not None:
            sent = self._with_children_sent(self.children, sent)
        # what clients are shown (page_type) and what serializes the rows as read
        # a column the item does not show (a filter's, say) is left out by the adapter
        exact = self._shows_its_columns(sent)
        self._writer = JsonWriter(_page_type(self.name, sent), exact=exact)
        self._item_writer = JsonWriter(sent, exact=exact)
        self._row = row_dict(tuple(self.columns))
        self._child_row = row_dict(tuple(self._child_selected))
        self._types = {name: column.type for name, column in self.columns.items()}
        self.query = self._dependency()

    def _with_children_sent(self, children: Children, sent: type) -> type:
        """The item type as its rows are serialized, its children's list of their own type
        as read (``_read_as_sent``); the children's columns as they are selected."""
        hints = get_type_hints(sent, include_extras=True)
        (child,) = get_args(hints.get(children.field, list[Any])) or (Any,)
        if not isinstance(child, type):
            raise ValueError(
                f"listing {self.name!r}: {children.field!r} is not a list of a TypedDict"
            )
        self._child_selected, child_sent = _read_as_sent(children.columns, child)
        if child_sent is child:
            return sent
        fields = {**hints, children.field: list[child_sent]}  # type: ignore[valid-type]
        return TypedDict(f"{self.item.__name__}Sent", fields)  # type: ignore[operator]

    def _shows_its_columns(self, sent: type) -> bool:
        """Whether the item type shows every column (and every child column) read."""
        shown = get_type_hints(sent)
        if not set(self.columns) <= set(shown):
            return False
        if self.children is None:
            return True
        (child,) = get_args(shown.get(self.children.field, list[Any])) or (Any,)
        return isinstance(child, type) and set(self._child_selected) <= set(get_type_hints(child))

    # --- the request ---------------------------------------------------------------------

    @property
    def sort_values(self) -> tuple[str, ...]:
        return tuple(v for name in self.sorts for v in (name, f"-{name}"))

    def _dependency(self) -> Callable[..., Awaitable[ListingQuery]]:
        """A function FastAPI reads as the listing's query parameters (its signature is
        generated: one parameter per filter)."""
        # Literal of values known at run time: typed as Any, as a type checker reads annotations
        sort_type = cast(Any, Literal)[self.sort_values]
        sorts = ", ".join(f"`{v}`" for v in self.sort_values)
        cursor_type = text(MAX_CURSOR, min_length=1) | None
        parameters = [
            inspect.Parameter(
                "cursor",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    cursor_type,
                    Query(description="`next_cursor` of the previous page, with the same sort"),
                ],
            ),
            inspect.Parameter(
                "limit",
                inspect.Parameter.KEYWORD_ONLY,
                default=DEFAULT_LIMIT,
                annotation=Annotated[LimitQuery, Query(description="rows per page (1-100)")],
            ),
            inspect.Parameter(
                "sort",
                inspect.Parameter.KEYWORD_ONLY,
                default=self.default_sort,
                annotation=Annotated[
                    sort_type,
                    Query(
                        description=f"one of {sorts}: a field, descending with `-`; ties are "
                        f"broken by `{self.key}`",
                        examples=[self.default_sort],
                    ),
                ],
            ),
        ]
        for f in self.filters:
            parameters.append(
                inspect.Parameter(
                    f.name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[f.annotation | None, Query(description=f.description)],
                )
            )
        names = [f.name for f in self.filters]

        # async: it only arranges what FastAPI validated; a plain function would cost every
        # listing request a trip through the thread pool
        async def listing_query(**given: Any) -> ListingQuery:
            filters = {n: given[n] for n in names if given[n] is not None}
            return ListingQuery(given["cursor"], given["limit"], given["sort"], filters)

        # The same parameters validated in one call, for routes that solve their dependencies
        # themselves (``tecnorev.core.web.routing``): the same types, so the same values and
        # errors, without FastAPI's work per parameter
        fields: dict[str, Any] = {
            "cursor": cursor_type,
            "limit": LimitQuery,
            "sort": sort_type,
            **{f.name: f.annotation | None for f in self.filters},
        }
        defaults: dict[str, Any] = {"limit": DEFAULT_LIMIT, "sort": self.default_sort}
        adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(
            TypedDict(f"{self.name}_query", fields, total=False)  # type: ignore[operator]
        )
        accepted = tuple(fields)

        def from_request(request: Request) -> tuple[ListingQuery, None]:
            given = request.query_params
            raw = {name: given[name] for name in accepted if name in given}
            try:
                values = {**defaults, **adapter.validate_python(raw)} if raw else defaults
            except ValidationError as exc:
                errors = exc.errors(include_url=False)
                raise RequestValidationError(
                    [{**e, "loc": ("query", *e["loc"])} for e in errors]
                ) from None
            filters = {n: values[n] for n in names if values.get(n) is not None}
            query = ListingQuery(values.get("cursor"), values["limit"], values["sort"], filters)
            return query, None

        listing_query.from_request = from_request  # type: ignore[attr-defined]

        listing_query.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        listing_query.__name__ = f"{self.name}_query"
        listing_query.listing = self  # type: ignore[attr-defined]  # which listing a route serves
        listing_query.error_codes = {422: {"invalid_cursor"}}  # type: ignore[attr-defined]
        return listing_query

    # --- the page ------------------------------------------------------------------------

    def items(
        self, session: Connectable, query: ListingQuery, scope: Mapping[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The rows of one page and the cursor of the next (``None`` on the last page), kept
        to ``scope`` (values of the listing's ``scopes``, by name)."""
        sort = query.sort.lstrip("-")
        descending = query.sort.startswith("-")
        params: dict[str, Any] = {"_limit": query.limit + 1}
        active: list[str] = []
        by_name = {f.name: f for f in self.filters}
        for name, value in query.filters.items():
            f = by_name[name]
            if f.applies(value):
                active.append(name)
                params[f"f_{name}"] = f.bind(value)
        if query.cursor is not None:
            values = self._decode(query.cursor, query.sort)
            params["_after"] = values[0]
            if sort not in self.unique:
                params["_after_key"] = values[1]
        given = scope or {}
        scoped = tuple(sorted(given))
        for name in scoped:
            if name not in self.scopes:
                raise ValueError(f"listing {self.name!r} has no scope {name!r}")
            params[f"s_{name}"] = given[name]
        connection = session.connection()
        shape = (sort, descending, tuple(active), query.cursor is not None, scoped)
        rows = self._cached(shape).run(connection, params).all()
        # a row has one value per field: Direct checks the statement's columns once
        items = list(map(self._row, rows[: query.limit]))
        if self.children is not None and items:
            self._read_children(connection, items)
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1]
            next_cursor = self.encode_cursor(query.sort, last[sort], last[self.key])
        return items, next_cursor

    def page(
        self, session: Connectable, query: ListingQuery, scope: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        items, next_cursor = self.items(session, query, scope)
        return {"items": items, "next_cursor": next_cursor}

    def page_json(
        self, session: Connectable, query: ListingQuery, scope: Mapping[str, Any] | None = None
    ) -> bytes:
        """The page as the JSON body the API sends: serialized once, no model per row."""
        return self._writer.dump(self.page(session, query, scope))

    async def response(
        self, session: Connectable, query: ListingQuery, scope: Mapping[str, Any] | None = None
    ) -> Response:
        """The page as a route's answer, read by ``run_read``: on the event loop on
        PostgreSQL, else in one thread hand-off for the whole page."""
        return await read_page(partial(self.page_json, session, query, scope), on=session)

    def one_json(
        self,
        session: Connectable,
        filters: Mapping[str, Any],
        scope: Mapping[str, Any] | None = None,
    ) -> bytes | None:
        """The first item ``filters`` select (by its key, say) as the JSON body of a route
        showing one item, read and serialized as a page's items are; ``None`` if none is."""
        items, _ = self.items(session, ListingQuery(None, 1, self.default_sort, filters), scope)
        return self._item_writer.dump(items[0]) if items else None

    def dump(self, page: Mapping[str, Any]) -> bytes:
        return self._writer.dump(page)

    # --- statements ----------------------------------------------------------------------

    def _statement(
        self,
        sort: str,
        descending: bool,
        active: tuple[str, ...],
        after: bool,
        scoped: tuple[str, ...] = (),
    ) -> sa.Select[Any]:
        statement = sa.select(*(column.label(name) for name, column in self._selected.items()))
        if self.select_from is not None:
            statement = statement.select_from(self.select_from)
        if self.where:
            statement = statement.where(*self.where)
        by_name = {f.name: f for f in self.filters}
        for name in active:
            f = by_name[name]
            statement = statement.where(f.where(sa.bindparam(f"f_{name}", type_=f.type_)))
        for name in scoped:
            statement = statement.where(self.scopes[name](sa.bindparam(f"s_{name}")))
        sort_column, key_column = self.columns[sort], self.columns[self.key]
        if after:
            mark = sa.bindparam("_after", type_=sort_column.type)
            if sort in self.unique:
                condition = sort_column < mark if descending else sort_column > mark
            else:
                # a row comparison: PostgreSQL reads it as one range of a (sort, key) index
                pair = sa.tuple_(sort_column, key_column)
                marks = sa.tuple_(mark, sa.bindparam("_after_key", type_=key_column.type))
                condition = pair < marks if descending else pair > marks
            statement = statement.where(condition)
        order = [sort_column] if sort in self.unique else [sort_column, key_column]
        statement = statement.order_by(*(c.desc() if descending else c.asc() for c in order))
        return statement.limit(sa.bindparam("_limit", type_=sa.Integer))

    def _read_children(self, connection: sa.Connection, items: list[dict[str, Any]]) -> None:
        """The children of a whole page in one more statement, one index range per row.

        Measured against reading them in the page's statement on PostgreSQL (an order page:
        50 orders, 150 items): arrays aggregated by a lateral join cost its backend 0.25 ms
        more per page read one at a time, 0.7 ms under load, and saved the worker less; a
        UNION of the page and its children let the planner scan the whole child table."""
        assert self.children is not None
        if self._children_statement is None:
            children = self.children
            self._children_statement = Direct(
                sa.select(
                    *(column.label(name) for name, column in self._child_selected.items()),
                    children.parent.label("_parent"),  # last: a dict of the row stops before
                )
                .where(children.parent.in_(sa.bindparam("_parents", expanding=True)))
                .order_by(children.parent, *children.order_by)
            )
        found: dict[Any, list[dict[str, Any]]] = {}
        child_row = self._child_row
        parents = [item[self.key] for item in items]
        for row in self._children_statement.run(connection, {"_parents": parents}):
            parent = row[-1]
            if parent in found:
                found[parent].append(child_row(row))
            else:
                found[parent] = [child_row(row)]
        name = self.children.field
        for item in items:
            item[name] = found.get(item[self.key], [])

    def _cached(self, shape: tuple[str, bool, tuple[str, ...], bool, tuple[str, ...]]) -> Direct:
        # a few dozen shapes at most (sorts x filter combinations x first page or not x
        # scoped or not), each compiled once and sent straight to the driver
        # (``tecnorev.core.direct``)
        direct = self._statements.get(shape)
        if direct is None:
            direct = self._statements[shape] = Direct(self._statement(*shape))
        return direct

    # --- cursors -------------------------------------------------------------------------

    def encode_cursor(self, sort: str, value: Any, key: Any) -> str:
        """The cursor of the page after the row with ``value`` (of the sort field) and ``key``."""
        parts = [sort, _jsonable(value)]
        if sort.lstrip("-") not in self.unique:
            parts.append(_jsonable(key))
        raw = json.dumps(parts, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode(self, cursor: str, sort: str) -> list[Any]:
        """The values ``cursor`` holds, typed as their columns; raises ``InvalidCursor``,
        also for a cursor made under another sort."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            parts = json.loads(raw)
        except (binascii.Error, ValueError):
            raise _invalid() from None
        field = sort.lstrip("-")
        names = [field] + ([self.key] if field not in self.unique else [])
        if not isinstance(parts, list) or len(parts) != len(names) + 1 or parts[0] != sort:
            raise _invalid()
        return [_typed(value, self._types[n]) for value, n in zip(parts[1:], names, strict=True)]


async def read_page(read: Callable[[], bytes], *, on: Connectable | None = None) -> Response:
    """The JSON body ``read`` returns as a route's answer, read by ``run_read`` with what
    ``read`` reads ``on`` (without it, on the reading threads): for a route whose page needs
    more than ``Listing.response`` (its caller looked up in the same read, say)."""
    return Response(await run_read(read, on=on), media_type="application/json")


def _page_type(name: str, item: type) -> Any:
    """``{"items": list[item], "next_cursor": str | None}``, named after the listing (the
    name clients' generated types get)."""
    title = "".join(part.capitalize() for part in name.split("_")) + "Page"
    fields = {"items": list[item], "next_cursor": str | None}  # type: ignore[valid-type]
    return TypedDict(title, fields)  # type: ignore[operator]


def money_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A money column read as the text the API sends: ``12.50``, two decimals always (a
    ``NUMERIC(12, 2)``'s text on PostgreSQL; formatted so by SQLite, which keeps a REAL).  No
    ``Decimal`` is made only to be turned back into text (an order page holds 450 amounts),
    and ``MoneyOut`` sends text as it is."""
    return _MoneyText(column)


class _MoneyText(sa.sql.functions.FunctionElement[str]):
    type = sa.Text()
    inherit_cache = True


@compiles(_MoneyText)
def _money_text(element: _MoneyText, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS TEXT)"


@compiles(_MoneyText, "sqlite")
def _money_text_sqlite(element: _MoneyText, compiler: Any, **kw: Any) -> str:
    # a REAL holds 12 digits and two decimals exactly enough to round to them
    return f"printf('%.2f', {compiler.process(element.clauses, **kw)})"


def utc_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A timestamp column read as the text the API sends: ISO 8601 in UTC with a ``Z``,
    microseconds when there are any (what pydantic writes for an aware ``datetime``).
    PostgreSQL formats it; on SQLite, which keeps text, the stored value is reformatted as it
    is read.  No ``datetime`` is made only to be written out again (an order page holds 150)."""
    return _UtcText(column)


class _IsoUtcText(sa.types.TypeDecorator[str]):
    impl = sa.Text
    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name == "postgresql":
            return None  # formatted by the database
        return _iso_utc

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        raise TypeError("utc_text() is read, never bound")  # pragma: no cover


def _iso_utc(value: str | dt.datetime | None) -> str | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"  # isoformat leaves out zero microseconds, as pydantic does


class _UtcText(sa.sql.functions.FunctionElement[str]):
    type = _IsoUtcText()
    inherit_cache = True


@compiles(_UtcText)
def _utc_text(element: _UtcText, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    whole = """'YYYY-MM-DD"T"HH24:MI:SS"Z"'"""
    fraction = """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"""
    return (
        f"to_char({column} AT TIME ZONE 'UTC', CASE WHEN date_trunc('second', {column}) = "
        f"{column} THEN {whole} ELSE {fraction} END)"
    )


@compiles(_UtcText, "sqlite")
def _utc_text_sqlite(element: _UtcText, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))  # reformatted as read (_iso_utc)


def values_of(select: sa.Select[Any]) -> sa.ColumnElement[list[Any]]:
    """The values of ``select``'s one column, correlated with a listing's row, as one output
    field: a sorted list (a user's role names), read with the row in the page's own statement
    rather than by one more statement per page.  ``ARRAY(SELECT ... ORDER BY ...)`` on
    PostgreSQL; ``json_group_array`` on SQLite, sorted as it is read.  For text and numbers."""
    return _Values(select.order_by(None).order_by(*select.selected_columns))


class _Values(sa.sql.expression.ColumnElement[list[Any]]):
    inherit_cache = True
    _traverse_internals = [("select", sa.sql.visitors.InternalTraversal.dp_clauseelement)]

    def __init__(self, select: sa.Select[Any]) -> None:
        self.select = select
        self.type = _SortedValues()


@compiles(_Values)
def _values(element: _Values, compiler: Any, **kw: Any) -> str:
    # ARRAY(subquery) keeps the subquery's order and is '{}' when it finds nothing
    return "ARRAY" + compiler.process(element.select.scalar_subquery(), **kw)


@compiles(_Values, "sqlite")
def _values_sqlite(element: _Values, compiler: Any, **kw: Any) -> str:
    (column,) = element.select.selected_columns
    aggregated = element.select.with_only_columns(sa.func.json_group_array(column)).order_by(None)
    return compiler.process(aggregated.scalar_subquery(), **kw)


class _SortedValues(sa.types.TypeDecorator[list[Any]]):
    impl = sa.types.JSON
    cache_ok = True

    def result_processor(self, dialect: sa.Dialect, coltype: Any) -> Any:
        if dialect.name == "postgresql":
            return None  # psycopg2 reads the array as a list, in order
        return self._from_json

    @staticmethod
    def _from_json(value: str | None) -> list[Any]:
        return sorted(json.loads(value)) if value else []


def _read_as_sent(
    columns: Mapping[str, sa.ColumnElement[Any]], item: type
) -> tuple[dict[str, sa.ColumnElement[Any]], type]:
    """The columns a page selects, and the item type its rows are serialized with: what the
    item shows as ``MoneyOut`` is read as its text (which ``MoneyOut`` sends as it is), a
    timestamp as its ISO 8601 text (``utc_text``), and a string enum as its plain value, sent
    as a string.  None costs a Python call per value on the way out: no ``Decimal``,
    ``datetime`` or enum member is made only to be turned back into text."""
    shown = get_type_hints(item, include_extras=True)
    selected: dict[str, sa.ColumnElement[Any]] = {}
    sent = dict(shown)
    for name, column in columns.items():
        kind = shown.get(name)
        if kind == MoneyOut and isinstance(column.type, sa.Numeric):
            column = money_text(column)
        elif kind in (dt.datetime, dt.datetime | None) and _is_utc(column.type):
            column = utc_text(column)
            sent[name] = str if kind is dt.datetime else str | None
        elif isinstance(column.type, sa.Enum) and _is_str_enum(kind):
            column = sa.type_coerce(column, sa.String())
            sent[name] = str | None if type(None) in get_args(kind) else str
        selected[name] = column
    if sent == shown:
        return selected, item
    wire = TypedDict(f"{item.__name__}Sent", sent)  # type: ignore[misc]
    return selected, wire


def _is_utc(column_type: sa.types.TypeEngine[Any]) -> bool:
    impl = getattr(column_type, "impl_instance", column_type)
    return isinstance(impl, sa.DateTime) and bool(impl.timezone)


def _is_str_enum(kind: Any) -> bool:
    members = [k for k in get_args(kind) if k is not type(None)] if get_args(kind) else [kind]
    return len(members) == 1 and isinstance(members[0], type) and issubclass(members[0], StrEnum)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _python_type(column_type: sa.types.TypeEngine[Any]) -> type:
    impl = getattr(column_type, "impl_instance", column_type)  # a TypeDecorator's own type
    try:
        return impl.python_type
    except NotImplementedError:
        return str


def _typed(value: Any, column_type: sa.types.TypeEngine[Any]) -> Any:
    kind = _python_type(column_type)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
        elif kind is int:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63:
                return value
        elif kind is Decimal:
            if isinstance(value, str):
                number = Decimal(value)
                if number.is_finite():
                    return number
        elif kind is dt.datetime:
            if isinstance(value, str):
                moment = dt.datetime.fromisoformat(value)
                if moment.tzinfo is not None:
                    return moment
        elif isinstance(value, str):
            return value
    except (ValueError, InvalidOperation):
        pass
    raise _invalid()


def listing_of(route: Any) -> Listing | None:
    """The listing a route serves (through ``Listing.query``), if any."""
    pending = list(getattr(getattr(route, "dependant", None), "dependencies", ()))
    while pending:
        dependency = pending.pop()
        found = getattr(dependency.call, "listing", None)
        if isinstance(found, Listing):
            return found
        pending.extend(dependency.dependencies)
    return None


def _invalid() -> InvalidCursor:
    return InvalidCursor("the cursor is not one this listing handed out (with this sort)")
