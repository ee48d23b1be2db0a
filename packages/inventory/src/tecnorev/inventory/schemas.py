"""Request and response bodies of the inventory endpoints (no tables)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from typing_extensions import TypedDict

from tecnorev.core.web.types import (
    Id,
    Patch,
    Quantity,
    SignedQuantity,
    StrictBool,
    Text,
)
from tecnorev.inventory.models import MovementReason

MAX_LINES = 100

BranchCode = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=32, strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]+$"
    ),
]
BranchName = Annotated[str, Text(120, min_length=1)]
Address = Annotated[str, Text(500)]
Reference = Annotated[str, Text(100, min_length=1)]
OptionalReference = Annotated[str, Text(100)]
Note = Annotated[str, Text(500)]
AdjustmentReason = Annotated[str, Text(500, min_length=1)]


class _Request(BaseModel):
    # a misspelt field is refused rather than silently ignored
    model_config = ConfigDict(extra="forbid")


class BranchCreate(_Request):
    code: BranchCode
    name: BranchName
    address: Address = ""
    is_active: StrictBool = True


class BranchUpdate(Patch):
    """Only the fields sent are changed; the code cannot change."""

    name: BranchName | None = None
    address: Address | None = None
    is_active: StrictBool | None = None


class BranchPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name: str
    address: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class StaffPublic(BaseModel):
    branch_id: int
    user_id: int
    email: str
    created_at: datetime


class StockPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    branch_id: int
    product_id: int
    quantity: int
    updated_at: datetime


class MovementPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    branch_id: int
    product_id: int
    quantity_delta: int
    reason: MovementReason
    transfer_id: str | None
    reference: str
    note: str
    created_at: datetime
    created_by_id: int | None


class StockLine(_Request):
    product_id: Id
    quantity: Quantity


Lines = Annotated[list[StockLine], Field(min_length=1, max_length=MAX_LINES)]


class _LinesRequest(_Request):
    lines: Lines

    def quantities(self) -> dict[int, int]:
        """Units per product; a product listed twice counts once with both quantities."""
        total: Counter[int] = Counter()
        for line in self.lines:
            total[line.product_id] += line.quantity
        return dict(total)


class ReceiptCreate(_LinesRequest):
    branch_id: Id
    reference: Reference = Field(description="the delivery's reference, e.g. the supplier note")
    note: Note = ""


class ReceiptPublic(BaseModel):
    branch_id: int
    reference: str
    stock: list[StockPublic] = Field(description="the received products' stock after receipt")


class AdjustmentCreate(_Request):
    branch_id: Id
    product_id: Id
    quantity_delta: SignedQuantity
    reason: AdjustmentReason = Field(description="why the count changed; kept as the note")
    reference: OptionalReference = ""

    @field_validator("quantity_delta")
    @classmethod
    def _changes_something(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be zero")
        return value


class AdjustmentPublic(BaseModel):
    stock: StockPublic


class TransferCreate(_LinesRequest):
    from_branch_id: Id
    to_branch_id: Id
    reference: Reference
    note: Note = ""


class TransferPublic(BaseModel):
    transfer_id: str
    from_branch_id: int
    to_branch_id: int
    reference: str
    stock: list[StockPublic] = Field(
        description="the moved products' stock at the source, and at the destination when the "
        "caller reaches it (staff of it, or inventory:read_all)"
    )


# --- listings ------------------------------------------------------------------------------
# Rows of a page: plain dicts serialized once (see ``tecnorev.core.listing``).


class BranchSummary(TypedDict):
    id: int
    code: str
    name: str
    address: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class StockSummary(TypedDict):
    id: int
    branch_id: int
    product_id: int
    quantity: int
    updated_at: datetime


class MovementSummary(TypedDict):
    id: int
    branch_id: int
    product_id: int
    quantity_delta: int
    reason: MovementReason
    transfer_id: str | None
    reference: str
    note: str
    created_at: datetime
    created_by_id: int | None
