"""Request and response bodies of the catalog endpoints.

Every request field is bounded (see ``tecnorev.core.web.types``) so that NUL bytes, huge
strings, ids past int4 and prices past ``Numeric(12, 2)`` are 422s, never driver errors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

from tecnorev.core.settings import store_currency
from tecnorev.core.web.types import (
    INT4_MAX,
    CurrencyOut,
    Id,
    Money,
    MoneyOut,
    Name,
    Patch,
    StrictBool,
    StrictInt,
    Text,
)

SLUG_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"

CategoryName = Annotated[str, Text(120, min_length=1)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=140, pattern=SLUG_PATTERN)]
# A code printed on labels and typed at tills: printable ASCII without spaces.
Sku = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, strip_whitespace=True, pattern=r"^[!-~]+$"),
]
Description = Annotated[str, Text(10_000)]


def _web_address(value: str) -> str:
    """An address a browser can load: its host must parse (``http://[`` does not)."""
    try:
        host = urlsplit(value).hostname
    except ValueError:
        host = None
    if not host:
        raise ValueError("must be an http or https address with a host")
    return value


ImageUrl = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=2048, strip_whitespace=True, pattern=r"^https?://[!-~]+$"
    ),
    AfterValidator(_web_address),
]
AltText = Annotated[str, Text(255)]
Position = Annotated[StrictInt, Field(ge=0, le=INT4_MAX)]
# Enough for any product page; a bound keeps a reorder request small.
MAX_IMAGES = 500


class _Request(BaseModel):
    # a misspelt field is refused rather than silently ignored
    model_config = ConfigDict(extra="forbid")


# --- categories --------------------------------------------------------------------------


class CategoryCreate(_Request):
    name: CategoryName
    slug: Slug
    parent_id: Id | None = None


class CategoryUpdate(Patch):
    """``parent_id: null`` moves the category to the top level."""

    _nullable: ClassVar[frozenset[str]] = frozenset({"parent_id"})

    name: CategoryName | None = None
    slug: Slug | None = None
    parent_id: Id | None = None


class CategoryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    parent_id: int | None


# --- products ----------------------------------------------------------------------------


class ProductCreate(_Request):
    sku: Sku
    name: Name
    description: Description = ""
    price: Money
    is_active: StrictBool = True
    category_id: Id | None = None


class ProductUpdate(Patch):
    """The SKU is fixed once created: orders and stock records quote it."""

    _nullable: ClassVar[frozenset[str]] = frozenset({"category_id"})

    name: Name | None = None
    description: Description | None = None
    price: Money | None = None
    is_active: StrictBool | None = None
    category_id: Id | None = None


class ImagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    alt_text: str
    position: int


class ProductPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    sku: str
    name: str
    description: str
    price: MoneyOut
    currency: CurrencyOut = Field(default_factory=store_currency)
    is_active: bool
    category_id: int | None
    created_at: datetime
    updated_at: datetime
    images: list[ImagePublic]


class ImageCreate(_Request):
    url: ImageUrl
    alt_text: AltText = ""
    position: Position | None = Field(
        default=None,
        description="where the image goes (0 is first); the images from there move one place "
        "down. Left out, or past the end: after the last image.",
    )


class ImageOrder(_Request):
    image_ids: list[Id] = Field(
        max_length=MAX_IMAGES, description="every image of the product, in the order wanted"
    )


# --- listings ----------------------------------------------------------------------------
# Rows of a page: plain dicts serialized once (see ``tecnorev.core.listing``).


class CategorySummary(TypedDict):
    id: int
    name: str
    slug: str
    parent_id: int | None


class ProductSummary(TypedDict):
    id: int
    sku: str
    name: str
    price: MoneyOut
    currency: CurrencyOut
    is_active: bool
    category_id: int | None
    image_url: str | None  # the first image, if any
