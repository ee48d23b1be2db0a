"""Bounded, strict types for request schemas and parameters.

Table models do not validate input, and the database turns what slips through into 500s:
psycopg2 refuses NUL bytes with a bare ValueError, ids past int4 and numbers past a column's
precision fail in the driver.  Request schemas use these types so such input is a 422.

They are strict as well: an integer is a JSON integer (not ``"1"``, ``true`` or ``1.0``), a
boolean a JSON boolean (not ``0``), an id in a path or query is written in canonical digits
(not ``01``, ``+1``, `` 1`` or ``1.0``), a boolean in a query is ``true`` or ``false``, and
money is a decimal string matching ``MONEY_PATTERN`` (binary floats cannot hold cents), a
moment an ISO 8601 date and time with its offset (not a number of seconds).  ``Patch`` is the
base of partial updates: ``null`` only where a column may be emptied.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

from annotated_types import Ge, GroupedMetadata, Le
from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from starlette.convertors import Convertor, register_url_convertor

INT4_MAX = 2**31 - 1


def no_nul(value: str) -> str:
    """Refuse NUL characters: PostgreSQL cannot store them in text."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


@dataclass(frozen=True)
class Text(GroupedMetadata):
    """``Annotated[str, Text(120, min_length=1)]``: a string of at most ``max_length``
    characters, without NUL, stripped unless ``strip`` is false.  Metadata rather than a
    function returning a type, so that a type checker sees a ``str``."""

    max_length: int
    min_length: int = 0
    strip: bool = True

    def __iter__(self) -> Iterator[Any]:
        yield StringConstraints(
            min_length=self.min_length, max_length=self.max_length, strip_whitespace=self.strip
        )
        yield AfterValidator(no_nul)


def text(max_length: int, *, min_length: int = 0, strip: bool = True) -> Any:
    """``Annotated[str, Text(...)]`` as a value, for annotations built at run time."""
    return Annotated[str, Text(max_length, min_length=min_length, strip=strip)]


_DIGITS = re.compile(r"^(0|-?[1-9][0-9]{0,18})$")


def _canonical_int(value: Any) -> Any:
    """A parameter's text, when it is an integer written the one canonical way."""
    if isinstance(value, str):
        if not _DIGITS.match(value):
            raise ValueError("must be an integer written in digits, without sign or leading 0")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _canonical_bool(value: Any) -> Any:
    if value in ("true", "false"):
        return value == "true"
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


def canonical_int(minimum: int, maximum: int) -> Any:
    """An integer parameter (path or query: text on the wire) from ``minimum`` to ``maximum``.
    The bounds come before the validator, so the schema shows them as JSON Schema does."""
    return Annotated[int, Ge(minimum), Le(maximum), BeforeValidator(_canonical_int)]


CanonicalBool = Annotated[bool, BeforeValidator(_canonical_bool)]
# for bodies (JSON)
StrictInt = Annotated[int, Strict()]
StrictBool = Annotated[bool, Strict()]

Id = Annotated[StrictInt, Ge(1), Le(INT4_MAX)]
# canonical_int(...) written out, so that a type checker sees an int
IdQuery = Annotated[int, Ge(1), Le(INT4_MAX), BeforeValidator(_canonical_int)]
IdPath = Annotated[IdQuery, Path()]
LimitQuery = Annotated[int, Ge(1), Le(100), BeforeValidator(_canonical_int), Query()]
BoolQuery = CanonicalBool
Quantity = Annotated[StrictInt, Ge(1), Le(1_000_000)]
SignedQuantity = Annotated[StrictInt, Ge(-1_000_000), Le(1_000_000)]

MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_MONEY = re.compile(MONEY_PATTERN)
_MONEY_SCHEMA = {
    "type": "string",
    "pattern": MONEY_PATTERN,
    "description": "an amount in the currency's units, with at most two decimals",
    "examples": ["19.90"],
}


def _money(value: Any) -> Any:
    if isinstance(value, Decimal):  # from Python code, not from a client
        return value
    if not isinstance(value, str) or not _MONEY.match(value):
        raise ValueError('must be a decimal string such as "19.90" (at most two decimals)')
    return Decimal(value)


Money = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False),
    WithJsonSchema(_MONEY_SCHEMA),
]
MoneyQuery = Annotated[Decimal, BeforeValidator(_money), WithJsonSchema(_MONEY_SCHEMA)]


def _two_decimals(amount: Decimal) -> str:
    # an amount read from a NUMERIC(12, 2) column has its two decimals already, and its own
    # text is a third of the cost of formatting it
    text = str(amount)
    return text if text[-3:-2] == "." and "E" not in text else f"{amount:.2f}"


# money in a response: a decimal string with two decimals.  Text goes out as it is, with no
# call into Python per amount (an order page shows 450): it is an amount read as its text
# (``tecnorev.core.listing.money_text``), which has its two decimals on every backend
MoneyOut = Annotated[
    str | Annotated[Decimal, PlainSerializer(_two_decimals, return_type=str, when_used="json")],
    WithJsonSchema({**_MONEY_SCHEMA, "description": "an amount, two decimals"}),
]
_MOMENT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)$"
)


def _moment(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # from Python code, not from a client
        return value
    if not isinstance(value, str) or not _MOMENT.match(value):
        raise ValueError(
            "must be a date and time with its offset (ISO 8601), such as 2026-12-06T09:30:00Z"
        )
    return value  # parsed by AwareDatetime


# a body field or a query parameter; pydantic alone would take 0.5 for 1970-01-01T00:00:00.5Z
Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]
# beside money in a response: the store's currency (core setting TECNOREV_CURRENCY)
CurrencyOut = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Z]{3}$",
            "description": "ISO 4217 code of the amounts beside it",
            "examples": ["USD"],
        }
    ),
]
Name = Annotated[str, Text(200, min_length=1)]
Email = Annotated[
    str,
    StringConstraints(
        min_length=3,
        max_length=320,
        strip_whitespace=True,
        to_lower=True,
        pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$",
    ),
]


def patch_schema(schema: dict[str, Any], model: type) -> None:
    """``json_schema_extra`` of a partial update: every field is optional, but the schema
    offers ``null`` only for the fields named in the model's ``_nullable`` (where ``null``
    empties a column); for the others a client may leave the field out, not send null."""
    nullable: frozenset[str] = getattr(model, "_nullable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        if name in nullable:
            continue
        prop.pop("default", None)
        branches = [b for b in prop.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            prop.update(branches[0])
        elif branches:
            prop["anyOf"] = branches


class Patch(BaseModel):
    """A partial update: fields left out stay as they are; ``null`` is accepted only for the
    fields named in ``_nullable`` (where it empties the column), so it is never mistaken for
    "leave unchanged"; the schema offers it only there (``patch_schema``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=patch_schema)
    _nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _refuse_null(self) -> Self:
        nulls = sorted(
            name
            for name in self.model_fields_set
            if getattr(self, name) is None and name not in self._nullable
        )
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields sent, with their values."""
        return self.model_dump(exclude_unset=True)


class DigitsConvertor(Convertor[str]):
    """``{name:digits}`` in a path: a segment of digits, left as text for the parameter's
    own (canonical) validation.  A route whose id sits next to a fixed word
    (``/images/{image_id:digits}`` beside ``/images/order``) then never takes the word for
    an id: the word's other methods answer 405."""

    regex = "[0-9]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("digits", DigitsConvertor())
