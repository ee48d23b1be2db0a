"""The inventory's collections, on the listing contract (``tecnorev.core.listing``)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tecnorev.core.db import table_of
from tecnorev.core.listing import Listing, at_least, at_most, before, columns_of, equals
from tecnorev.core.web.types import BoolQuery, IdQuery, Moment, canonical_int, text
from tecnorev.inventory.models import Branch, BranchStaff, InventoryMovement, StockEntry
from tecnorev.inventory.schemas import BranchSummary, MovementSummary, StockSummary

_branch = table_of(Branch)
_stock = table_of(StockEntry)
_movement = table_of(InventoryMovement)
_staff = table_of(BranchStaff)

QuantityQuery = canonical_int(0, 2**31 - 1)


def staff_branches(user_id: int | sa.BindParameter[Any]) -> sa.Select[tuple[int]]:
    """The branches ``user_id`` is staff of, as a subquery (no statement of its own)."""
    return sa.select(_staff.c.branch_id).where(_staff.c.user_id == user_id)


branches = Listing(
    "branches",
    columns=columns_of(_branch, "id code name address is_active created_at updated_at"),
    item=BranchSummary,
    sorts=("id", "code", "name"),
    unique=frozenset({"code"}),
    default_sort="code",
    filters=(
        equals(
            "is_active",
            _branch.c.is_active,
            BoolQuery,
            "open or not; callers without branches:manage or inventory:read see open ones only",
        ),
    ),
)

stock = Listing(
    "stock",
    columns=columns_of(_stock, "id branch_id product_id quantity updated_at"),
    item=StockSummary,
    sorts=("id", "quantity"),
    default_sort="id",
    filters=(
        equals("branch_id", _stock.c.branch_id, IdQuery, "at this branch"),
        equals("product_id", _stock.c.product_id, IdQuery, "of this product"),
        at_most("quantity_max", _stock.c.quantity, QuantityQuery, "low stock: at most this many"),
    ),
    # staff without inventory:read_all see the branches they work at
    scopes={"staff": lambda user: _stock.c.branch_id.in_(staff_branches(user))},
)

movements = Listing(
    "movements",
    columns=columns_of(
        _movement,
        "id branch_id product_id quantity_delta reason transfer_id reference note "
        "created_at created_by_id",
    ),
    item=MovementSummary,
    sorts=("id",),
    default_sort="-id",
    filters=(
        equals("branch_id", _movement.c.branch_id, IdQuery, "at this branch"),
        equals("product_id", _movement.c.product_id, IdQuery, "of this product"),
        equals(
            "reason",
            _movement.c.reason,
            InventoryMovement.model_fields["reason"].annotation,
            "why the stock moved",
        ),
        equals(
            "transfer_id",
            _movement.c.transfer_id,
            text(32, min_length=1),
            "both sides of one transfer",
        ),
        at_least(
            "created_from",
            _movement.c.created_at,
            Moment,
            "recorded at or after (ISO 8601 with a time zone)",
        ),
        before(
            "created_before",
            _movement.c.created_at,
            Moment,
            "recorded before (ISO 8601 with a time zone)",
        ),
    ),
    scopes={"staff": lambda user: _movement.c.branch_id.in_(staff_branches(user))},
)
