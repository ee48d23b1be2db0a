"""Rows into what the API sends (``tecnorev.core.rows``): a row's dict as ``dict(zip())``
makes it, whatever its field names; orjson taken only for types pydantic writes as it does,
and the same bytes as the type's adapter for every value, orjson's refusals included."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, NotRequired

import pytest
from pydantic import BaseModel, PlainSerializer, TypeAdapter
from typing_extensions import TypedDict

from tecnorev.core.rows import JsonWriter, row_dict, written_alike
from tecnorev.core.web.types import MoneyOut


class Status(StrEnum):
    OPEN = "OPEN"
    SHIPPED = "SHIPPED"


class Line(TypedDict):
    sku: str
    quantity: int
    price: MoneyOut


class Basket(TypedDict):
    id: int
    name: str
    active: bool
    note: str | None
    status: Status
    kind: Literal["store", "online"]
    total: MoneyOut
    placed_at: str | dt.datetime  # text as a listing reads it, or a datetime
    lines: list[Line]


class Page(TypedDict):
    items: list[Basket]
    next_cursor: str | None


class Shown(BaseModel):
    id: int


class Shouting(TypedDict):
    name: Annotated[str, PlainSerializer(str.upper)]


class Partial(TypedDict):
    name: NotRequired[str]


def test_a_row_dict_names_each_value_by_its_field_in_order() -> None:
    fields = ("id", "it's", 'say "hi"', "back\\slash", "ünïcode", "class", "lambda row: 1")
    row = (1, "a", None, True, [2], {"x": 1}, 3.5, "extra beyond the fields")
    made = row_dict(fields)(row)
    assert made == dict(zip(fields, row, strict=False))
    assert list(made) == list(fields)
    assert row_dict(())(row) == {}


@pytest.mark.parametrize(
    ("kind", "alike"),
    [
        (Page, True),
        (list[Line], True),
        (Status | None, True),
        (Literal["a", 1], True),
        (float, False),  # each writes some floats its own way
        (Shown, False),  # a model's own serialization
        (Shouting, False),  # a serializer on a type orjson writes
        (Partial, False),  # read conservatively
        (dict[str, int], False),
        (list, False),
    ],
)
def test_orjson_is_taken_only_for_types_pydantic_writes_alike(kind: object, alike: bool) -> None:
    assert written_alike(kind) is alike
    assert JsonWriter(kind).fast is alike


def _basket(**changes: object) -> Basket:
    basket: Basket = {
        "id": 7,
        "name": "plain",
        "active": False,
        "note": None,
        "status": Status.SHIPPED,
        "kind": "online",
        "total": "12.50",
        "placed_at": "2026-12-08T02:00:00Z",  # read as the text sent (listing.utc_text)
        "lines": [{"sku": "A-1", "quantity": 3, "price": "4.10"}],
    }
    return {**basket, **changes}  # type: ignore[typeddict-item]


TEXTS = [
    'quotes " and \\ backslashes',
    "controls \x00\x01\x1f\t\n\r\x7f",
    "ünïcødé, 中文, emoji 🛒, \u2028 \u2029",
    "</script><!-- & ' >",
    "",
]


@pytest.mark.parametrize("name", TEXTS)
def test_plain_values_are_written_as_the_adapter_writes_them(name: str) -> None:
    page: Page = {
        "items": [_basket(name=name, note=name), _basket(id=-(2**63))],
        "next_cursor": name,
    }
    assert JsonWriter(Page).dump(page) == TypeAdapter(Page).dump_json(page)


@pytest.mark.parametrize(
    "changes",
    [
        {"total": Decimal("12.5")},  # a Decimal: the adapter's two decimals
        {"placed_at": dt.datetime(2026, 12, 8, 2, 0, 0, 5, tzinfo=dt.UTC)},  # its Z form
        {"id": 2**64},  # beyond what orjson writes
        {"lines": [{"sku": "B", "quantity": 1, "price": Decimal("3")}]},
    ],
)
def test_values_orjson_refuses_are_written_by_the_adapter(changes: dict[str, object]) -> None:
    page: Page = {"items": [_basket(), _basket(**changes)], "next_cursor": None}
    assert JsonWriter(Page).dump(page) == TypeAdapter(Page).dump_json(page)
