"""Inventory rules: branches and their staff, and every change of stock.

Stock only changes here, and every change writes ledger movements in the same unit of work,
so ``stock_entry.quantity`` always equals the sum of the movements for that branch and
product.  Stock is taken with one conditional ``UPDATE ... WHERE quantity >= :q`` per product,
in ascending product order: the database decides who gets the last unit (never oversold), and
concurrent callers lock rows in the same order (never deadlock each other).

A caller from the API passes its ``Reach``: staff read and change the stock of their branches
only, holders of ``inventory:read_all`` every branch's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from tecnorev.auth.models import User
from tecnorev.catalog.models import Product
from tecnorev.core.db import table_of
from tecnorev.core.direct import Direct
from tecnorev.core.metrics import count_on_commit
from tecnorev.core.types import utcnow
from tecnorev.inventory.errors import (
    BranchCodeTaken,
    BranchInactive,
    InsufficientStock,
    InvalidQuantity,
    NotBranchStaff,
    NotStaff,
    SameBranchTransfer,
    UnknownBranch,
    UnknownProduct,
    UnknownUser,
)
from tecnorev.inventory.metrics import STOCK_MOVEMENTS
from tecnorev.inventory.models import (
    Branch,
    BranchStaff,
    InventoryMovement,
    MovementReason,
    StockEntry,
)

_stock = table_of(StockEntry)
_movement = table_of(InventoryMovement)
_branch = table_of(Branch)

Lines = list[tuple[int, int]]
_Row = TypeVar("_Row", StockEntry, InventoryMovement)


# --- stock primitives (also used by sales for orders) --------------------------------------


def withdraw_stock(
    session: Session,
    *,
    branch_id: int,
    quantities: Mapping[int, int],
    reason: MovementReason,
    reference: str,
    author_id: int | None,
    note: str = "",
    check_branch: bool = True,
) -> None:
    """Take ``quantities`` (product id → units > 0) from an active branch, all or nothing.

    Raises ``UnknownBranch``, ``BranchInactive``, ``InvalidQuantity`` or ``InsufficientStock``
    (listing every short line with what is available); on any of them the stock is as before.
    ``check_branch=False`` skips reading the branch, for a caller that has just read
    ``branch_state`` in this transaction.
    """
    lines = _lines(quantities)
    if check_branch:
        _require_branch(session, branch_id, active=True)
    if not lines:
        return
    _take(session, branch_id, lines, author_id=author_id)
    _record(
        session,
        branch_id,
        [(product_id, -quantity) for product_id, quantity in lines],
        reason=reason,
        reference=reference,
        note=note,
        author_id=author_id,
    )


def return_stock(
    session: Session,
    *,
    branch_id: int,
    quantities: Mapping[int, int],
    reason: MovementReason,
    reference: str,
    author_id: int | None,
    note: str = "",
) -> None:
    """Put ``quantities`` (product id → units > 0) back at a branch, active or not (a cancelled
    order of a branch closed since still gives its stock back).

    Raises ``UnknownBranch`` or ``InvalidQuantity``.
    """
    lines = _lines(quantities)
    _require_branch(session, branch_id, active=False)
    if not lines:
        return
    _put(session, branch_id, lines, author_id=author_id)
    _record(
        session,
        branch_id,
        lines,
        reason=reason,
        reference=reference,
        note=note,
        author_id=author_id,
    )


def _lines(quantities: Mapping[int, int]) -> Lines:
    """The lines in ascending product order: the one lock order every caller shares."""
    lines = sorted(quantities.items())
    bad = [
        product_id
        for product_id, quantity in lines
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0
    ]
    if bad:
        raise InvalidQuantity(
            "quantities must be whole numbers greater than zero", details={"product_ids": bad}
        )
    return lines


def branch_state(session: Session, branch_id: int) -> bool | None:
    """Whether the branch is active; ``None`` when there is no such branch."""
    return _BRANCH_ACTIVE.run(session.connection(), {"b_id": branch_id}).scalar_one_or_none()


def _require_branch(
    session: Session, branch_id: int, *, active: bool, reach: Reach | None = None
) -> None:
    """The branch exists (404), is in ``reach`` (403: branches are public, so one out of
    reach is not hidden) and, if asked, is active (422)."""
    is_active = branch_state(session, branch_id)
    if is_active is None:
        raise UnknownBranch(f"there is no branch {branch_id}")
    branches = branches_in_reach(session, reach)
    if branches is not None and branch_id not in branches:
        raise NotBranchStaff(
            f"you are not staff of branch {branch_id}: stock is changed only at your branches",
            details={"branch_id": branch_id},
        )
    if active and not is_active:
        raise BranchInactive(f"branch {branch_id} is inactive")


# The statements of every stock change, built once: a request binds values and reuses the
# compiled form, instead of building a statement and its cache key per line.
_BRANCH_ACTIVE = Direct(sa.select(_branch.c.is_active).where(_branch.c.id == sa.bindparam("b_id")))
_CHANGED_BY = {
    "updated_at": sa.bindparam("s_now", type_=_stock.c.updated_at.type),
    "updated_by_id": sa.bindparam("s_author", type_=sa.Integer),
}
_SAME_ROW = (
    _stock.c.branch_id == sa.bindparam("s_branch", type_=sa.Integer),
    _stock.c.product_id == sa.bindparam("s_product", type_=sa.Integer),
)
_UNITS = sa.bindparam("s_quantity", type_=sa.Integer)
# a decrease matches only if enough stock is there
_TAKE = Direct(
    _stock.update()
    .where(*_SAME_ROW, _stock.c.quantity >= _UNITS)
    .values(quantity=_stock.c.quantity - _UNITS, **_CHANGED_BY)
)
_GIVE_BACK = Direct(
    _stock.update().where(*_SAME_ROW).values(quantity=_stock.c.quantity + _UNITS, **_CHANGED_BY)
)
_INSERT_MOVEMENTS = Direct(sa.insert(_movement))


def _change(
    session: Session, branch_id: int, product_id: int, delta: int, author_id: int | None
) -> bool:
    """One conditional update; a decrease matches only if enough stock is there."""
    params = {
        "s_branch": branch_id,
        "s_product": product_id,
        "s_quantity": abs(delta),
        "s_now": utcnow(),
        "s_author": author_id,
    }
    statement = _TAKE if delta < 0 else _GIVE_BACK
    return statement.run(session.connection(), params).rowcount == 1


def _take(session: Session, branch_id: int, lines: Lines, *, author_id: int | None) -> None:
    taken: Lines = []
    short: Lines = []
    for product_id, quantity in lines:
        ok = _change(session, branch_id, product_id, -quantity, author_id)
        (taken if ok else short).append((product_id, quantity))
    if not short:
        return
    available = _quantities(session, branch_id, [product_id for product_id, _ in short])
    # Give back what was taken, so a caller that catches the error keeps consistent stock;
    # these rows are already locked by this transaction, so this cannot wait on anyone.
    for product_id, quantity in taken:
        _change(session, branch_id, product_id, quantity, author_id)
    raise InsufficientStock(
        "not enough stock at branch "
        f"{branch_id} for product{'s' if len(short) > 1 else ''} "
        + ", ".join(str(product_id) for product_id, _ in short),
        details={
            "shortages": [
                {
                    "product_id": product_id,
                    "requested": quantity,
                    "available": available.get(product_id, 0),
                }
                for product_id, quantity in short
            ]
        },
    )


# the INSERTs with ON CONFLICT, by dialect
_UPSERTS: dict[str, Callable[[sa.Table], postgresql.Insert | sqlite.Insert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


def _put(session: Session, branch_id: int, lines: Lines, *, author_id: int | None) -> None:
    """Add stock, creating the branch-and-product row when it does not exist yet.

    ``INSERT ... ON CONFLICT DO UPDATE`` (PostgreSQL and SQLite) is one atomic statement, so two
    first receipts of the same product cannot both insert, and neither loses its units.
    """
    dialect = session.get_bind().dialect.name
    insert = _UPSERTS.get(dialect)
    if insert is None:
        raise NotImplementedError(f"stock upserts are not written for {dialect}")
    now = utcnow()
    statement = insert(_stock)
    statement = statement.on_conflict_do_update(
        index_elements=[_stock.c.branch_id, _stock.c.product_id],
        set_={
            "quantity": _stock.c.quantity + statement.excluded.quantity,
            "updated_at": statement.excluded.updated_at,
            "updated_by_id": statement.excluded.updated_by_id,
        },
    )
    session.execute(
        statement,
        [
            {
                "branch_id": branch_id,
                "product_id": product_id,
                "quantity": quantity,
                "created_at": now,
                "updated_at": now,
                "created_by_id": author_id,
                "updated_by_id": author_id,
            }
            for product_id, quantity in lines
        ],
    )


def _record(
    session: Session,
    branch_id: int,
    deltas: Lines,
    *,
    reason: MovementReason,
    reference: str,
    note: str,
    author_id: int | None,
    transfer_id: str | None = None,
) -> None:
    """Write one ledger movement per (product, signed delta) in one multi-row INSERT."""
    now = utcnow()
    count_on_commit(session, STOCK_MOVEMENTS, len(deltas), kind=reason.value.lower())
    _INSERT_MOVEMENTS.run_many(
        session.connection(),
        [
            {
                "branch_id": branch_id,
                "product_id": product_id,
                "quantity_delta": delta,
                "reason": reason,
                "transfer_id": transfer_id,
                "reference": reference,
                "note": note,
                "created_at": now,
                "created_by_id": author_id,
            }
            for product_id, delta in deltas
        ],
    )


def _quantities(session: Session, branch_id: int, product_ids: Iterable[int]) -> dict[int, int]:
    rows = session.execute(
        sa.select(_stock.c.product_id, _stock.c.quantity).where(
            _stock.c.branch_id == branch_id, _stock.c.product_id.in_(list(product_ids))
        )
    )
    return {product_id: quantity for product_id, quantity in rows}


# --- branches ------------------------------------------------------------------------------


def create_branch(
    session: Session,
    *,
    code: str,
    name: str,
    address: str = "",
    is_active: bool = True,
    author_id: int | None,
) -> Branch:
    if session.execute(sa.select(_branch.c.id).where(_branch.c.code == code)).first():
        raise BranchCodeTaken(f"a branch with code {code!r} already exists")
    branch = Branch(
        code=code,
        name=name,
        address=address,
        is_active=is_active,
        created_by_id=author_id,
        updated_by_id=author_id,
    )
    session.add(branch)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        # another request took the code between the check and the insert
        raise BranchCodeTaken(f"a branch with code {code!r} already exists") from exc
    return branch


def list_branches(session: Session, *, include_inactive: bool = True) -> list[Branch]:
    """The branches by code, the inactive ones only if asked (a retailer has tens of branches,
    not thousands)."""
    statement = select(Branch).order_by(Branch.code)
    if not include_inactive:
        statement = statement.where(Branch.is_active == sa.true())
    return list(session.exec(statement))


def get_branch(session: Session, branch_id: int) -> Branch:
    branch = session.get(Branch, branch_id)
    if branch is None:
        raise UnknownBranch(f"there is no branch {branch_id}")
    return branch


def update_branch(
    session: Session, branch_id: int, *, changes: Mapping[str, Any], author_id: int | None
) -> Branch:
    """Change a branch's name, address or active flag (its code is its stable identity)."""
    branch = get_branch(session, branch_id)
    for field in ("name", "address", "is_active"):
        if field in changes:
            setattr(branch, field, changes[field])
    branch.updated_by_id = author_id
    session.add(branch)
    session.flush()
    return branch


# --- staff ---------------------------------------------------------------------------------


def assign_staff(session: Session, *, branch_id: int, user_id: int) -> tuple[BranchStaff, str]:
    """Make ``user_id`` staff of the branch (assigning twice changes nothing); returns the
    assignment and the user's email."""
    get_branch(session, branch_id)
    user = session.get(User, user_id)
    if user is None:
        raise UnknownUser(f"there is no user {user_id}")
    staff = session.get(BranchStaff, (branch_id, user_id))
    if staff is None:
        staff = BranchStaff(branch_id=branch_id, user_id=user_id)
        session.add(staff)
        session.flush()
    return staff, user.email


def remove_staff(session: Session, *, branch_id: int, user_id: int) -> None:
    get_branch(session, branch_id)
    staff = session.get(BranchStaff, (branch_id, user_id))
    if staff is None:
        raise NotStaff(f"user {user_id} is not staff of branch {branch_id}")
    session.delete(staff)
    session.flush()


def list_staff(session: Session, branch_id: int) -> list[tuple[BranchStaff, str]]:
    """The branch's staff with each member's email, in order of assignment."""
    get_branch(session, branch_id)
    rows = session.exec(
        select(BranchStaff, User.email)
        .join(User, col(User.id) == BranchStaff.user_id)
        .where(BranchStaff.branch_id == branch_id)
        .order_by(col(BranchStaff.created_at), col(BranchStaff.user_id))
    )
    return list(rows)


def branch_ids_of(session: Session, user_id: int) -> set[int]:
    """The branches ``user_id`` works at."""
    rows = session.execute(
        sa.select(col(BranchStaff.branch_id)).where(col(BranchStaff.user_id) == user_id)
    ).scalars()
    return set(rows)


@dataclass(frozen=True)
class Reach:
    """Where a caller reads and changes stock: at the branches they are staff of, or at every
    branch with ``read_all`` (``inventory:read_all``)."""

    user_id: int
    read_all: bool = False


def branches_in_reach(session: Session, reach: Reach | None) -> set[int] | None:
    """The branches ``reach`` covers; ``None`` for every branch (``read_all``, or no reach
    given: a caller inside the application, such as sales placing an order)."""
    if reach is None or reach.read_all:
        return None
    return branch_ids_of(session, reach.user_id)


# --- stock and ledger reads ----------------------------------------------------------------


def list_stock(
    session: Session,
    *,
    reach: Reach | None = None,
    branch_id: int | None = None,
    product_id: int | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[StockEntry], int | None]:
    """A page of the stock rows in ``reach``, in id order, and the cursor of the next page
    (``None``: last)."""
    statement = select(StockEntry).order_by(col(StockEntry.id)).limit(limit + 1)
    branches = branches_in_reach(session, reach)
    if branches is not None:
        statement = statement.where(col(StockEntry.branch_id).in_(sorted(branches)))
    if branch_id is not None:
        statement = statement.where(StockEntry.branch_id == branch_id)
    if product_id is not None:
        statement = statement.where(StockEntry.product_id == product_id)
    if cursor is not None:
        statement = statement.where(col(StockEntry.id) > cursor)
    return _page(list(session.exec(statement)), limit)


def list_movements(
    session: Session,
    *,
    reach: Reach | None = None,
    branch_id: int | None = None,
    product_id: int | None = None,
    transfer_id: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> tuple[list[InventoryMovement], int | None]:
    """A page of the ledger movements in ``reach``, newest first, and the cursor of the next
    page (a transfer's staff of one side see that side's movement only)."""
    statement = (
        select(InventoryMovement).order_by(col(InventoryMovement.id).desc()).limit(limit + 1)
    )
    branches = branches_in_reach(session, reach)
    if branches is not None:
        statement = statement.where(col(InventoryMovement.branch_id).in_(sorted(branches)))
    if branch_id is not None:
        statement = statement.where(InventoryMovement.branch_id == branch_id)
    if product_id is not None:
        statement = statement.where(InventoryMovement.product_id == product_id)
    if transfer_id is not None:
        statement = statement.where(InventoryMovement.transfer_id == transfer_id)
    if cursor is not None:
        statement = statement.where(col(InventoryMovement.id) < cursor)
    return _page(list(session.exec(statement)), limit)


def _page(rows: list[_Row], limit: int) -> tuple[list[_Row], int | None]:
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].id
    return rows, None


def stock_levels(
    session: Session, branch_id: int, product_ids: Iterable[int], *, reach: Reach | None = None
) -> list[StockEntry]:
    """The branch's stock rows of ``product_ids``; none when the branch is out of ``reach``."""
    branches = branches_in_reach(session, reach)
    if branches is not None and branch_id not in branches:
        return []
    return list(
        session.exec(
            select(StockEntry)
            .where(
                StockEntry.branch_id == branch_id,
                col(StockEntry.product_id).in_(list(product_ids)),
            )
            .order_by(col(StockEntry.product_id))
        )
    )


# --- receipts, adjustments, transfers -------------------------------------------------------


def receive_stock(
    session: Session,
    *,
    branch_id: int,
    quantities: Mapping[int, int],
    reference: str,
    note: str = "",
    author_id: int | None,
    reach: Reach | None = None,
) -> None:
    """Goods arriving at an active branch in ``reach``: stock up, one RECEIPT movement per
    product."""
    _require_branch(session, branch_id, active=True, reach=reach)
    _require_products(session, quantities.keys())
    return_stock(
        session,
        branch_id=branch_id,
        quantities=quantities,
        reason=MovementReason.RECEIPT,
        reference=reference,
        author_id=author_id,
        note=note,
    )


def adjust_stock(
    session: Session,
    *,
    branch_id: int,
    product_id: int,
    quantity_delta: int,
    reason: str,
    reference: str = "",
    author_id: int | None,
    reach: Reach | None = None,
) -> None:
    """Correct a count (breakage, theft, a recount) at a branch in ``reach``: one ADJUSTMENT
    movement whose note is the reason.  Allowed at inactive branches too, whose stock still
    has to be right."""
    if quantity_delta == 0:
        raise InvalidQuantity("an adjustment must change the stock", details={"quantity_delta": 0})
    _require_branch(session, branch_id, active=False, reach=reach)
    _require_products(session, [product_id])
    if quantity_delta > 0:
        _put(session, branch_id, [(product_id, quantity_delta)], author_id=author_id)
    else:
        _take(session, branch_id, [(product_id, -quantity_delta)], author_id=author_id)
    _record(
        session,
        branch_id,
        [(product_id, quantity_delta)],
        reason=MovementReason.ADJUSTMENT,
        reference=reference,
        note=reason,
        author_id=author_id,
    )


def transfer_stock(
    session: Session,
    *,
    from_branch_id: int,
    to_branch_id: int,
    quantities: Mapping[int, int],
    reference: str,
    note: str = "",
    author_id: int | None,
    reach: Reach | None = None,
) -> str:
    """Move stock between branches, both sides or neither; returns the transfer id the
    TRANSFER_OUT and TRANSFER_IN movements share.

    The source may be inactive (emptying a closed branch); the destination must be active.
    A transfer is the source's act: the source must be in ``reach`` (stock leaves only a
    branch the caller answers for), the destination may be any branch, which only gains.
    """
    if from_branch_id == to_branch_id:
        raise SameBranchTransfer("a transfer needs two different branches")
    lines = _lines(quantities)
    _require_branch(session, from_branch_id, active=False, reach=reach)
    _require_branch(session, to_branch_id, active=True)
    _require_products(session, quantities.keys())
    transfer_id = uuid.uuid4().hex
    if not lines:
        return transfer_id
    # Rows are locked branch by branch in id order (then product order), the order every
    # stock change follows, so two opposite transfers cannot deadlock.
    if from_branch_id < to_branch_id:
        _take(session, from_branch_id, lines, author_id=author_id)
        _put(session, to_branch_id, lines, author_id=author_id)
    else:
        _put(session, to_branch_id, lines, author_id=author_id)
        try:
            _take(session, from_branch_id, lines, author_id=author_id)
        except InsufficientStock:
            # undo the arrival so the function stays all-or-nothing on its own
            for product_id, quantity in lines:
                _change(session, to_branch_id, product_id, -quantity, author_id)
            raise
    out = [(product_id, -quantity) for product_id, quantity in lines]
    _record(
        session,
        from_branch_id,
        out,
        reason=MovementReason.TRANSFER_OUT,
        transfer_id=transfer_id,
        reference=reference,
        note=note,
        author_id=author_id,
    )
    _record(
        session,
        to_branch_id,
        lines,
        reason=MovementReason.TRANSFER_IN,
        transfer_id=transfer_id,
        reference=reference,
        note=note,
        author_id=author_id,
    )
    return transfer_id


def _require_products(session: Session, product_ids: Iterable[int]) -> None:
    wanted = set(product_ids)
    if not wanted:
        return
    found = set(
        session.execute(
            sa.select(col(Product.id)).where(col(Product.id).in_(sorted(wanted)))
        ).scalars()
    )
    missing = sorted(wanted - found)
    if missing:
        raise UnknownProduct(
            f"no product with id {', '.join(map(str, missing))}", details={"product_ids": missing}
        )
