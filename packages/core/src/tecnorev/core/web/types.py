"""Bounded types for request schemas.

Table models do not validate input, and the database turns what slips through into 500s:
psycopg2 refuses NUL bytes with a bare ValueError, ids past int4 and numbers past a column's
precision fail in the driver.  Request schemas use these types so such input is a 422.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, Field, StringConstraints

INT4_MAX = 2**31 - 1


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def text(max_length: int, *, min_length: int = 0, strip: bool = True) -> Any:
    """A string of at most ``max_length`` characters, without NUL bytes."""
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length, strip_whitespace=strip),
        AfterValidator(_no_nul),
    ]


Id = Annotated[int, Field(ge=1, le=INT4_MAX)]
IdPath = Annotated[int, Path(ge=1, le=INT4_MAX)]
LimitQuery = Annotated[int, Query(ge=1, le=100)]
Quantity = Annotated[int, Field(ge=1, le=1_000_000)]
SignedQuantity = Annotated[int, Field(ge=-1_000_000, le=1_000_000)]
Money = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]
Name = text(200, min_length=1)
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
