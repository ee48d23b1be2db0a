"""The inventory endpoints: branches and their staff, stock, the ledger, and stock changes.

Branches are public: anyone, signed in or not, lists and reads the active ones (a customer
needs a ``branch_id`` to order); holders of ``branches:manage`` or ``inventory:read`` see the
inactive ones too.  Stock and movements are scoped by branch: ``inventory:read``,
``inventory:adjust`` and ``inventory:transfer`` act at the branches the caller is staff of
(a transfer: at its source), at every branch with ``inventory:read_all``.  Another branch's
stock is left out of lists; changing it is a 403 ``not_branch_staff``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import Depends, Response, status
from pydantic import TypeAdapter

from tecnorev.auth.deps import (
    Caller,
    CurrentUser,
    OptionalCaller,
    OptionalUser,
    Principal,
    read_as,
    require_permission,
)
from tecnorev.core.errors import NotAuthenticated, PermissionDenied
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, ReadSessionDep, Router, SessionDep
from tecnorev.core.web.types import IdPath
from tecnorev.inventory import listings, permissions, service
from tecnorev.inventory.errors import UnknownBranch
from tecnorev.inventory.models import BranchStaff
from tecnorev.inventory.schemas import (
    AdjustmentCreate,
    AdjustmentPublic,
    BranchCreate,
    BranchPublic,
    BranchUpdate,
    ReceiptCreate,
    ReceiptPublic,
    StaffPublic,
    StockPublic,
    TransferCreate,
    TransferPublic,
)

router = Router(prefix="/inventory")

# stock rows as the responses show them (``StockPublic`` reads their attributes)
_STOCK_ROWS = TypeAdapter(list[StockPublic])


def _require_any(*codes: str) -> Any:
    """Let through a caller holding at least one of ``codes`` (reads open to two roles)."""

    def check_any_permission(user: CurrentUser) -> Principal:
        if not any(user.can(code) for code in codes):
            wanted = " or ".join(repr(code) for code in codes)
            raise PermissionDenied(f"this requires the {wanted} permission")
        return user

    return Depends(check_any_permission)


Manager = Annotated[Principal, require_permission(permissions.BRANCHES_MANAGE)]
BranchReader = Annotated[
    Principal, _require_any(permissions.BRANCHES_MANAGE, permissions.INVENTORY_READ)
]
StockReader = Annotated[Principal, require_permission(permissions.INVENTORY_READ)]
Adjuster = Annotated[Principal, require_permission(permissions.INVENTORY_ADJUST)]
Transferrer = Annotated[Principal, require_permission(permissions.INVENTORY_TRANSFER)]


def _reach(user: Principal) -> service.Reach:
    return service.Reach(user.id, read_all=user.can(permissions.INVENTORY_READ_ALL))


# --- branches ------------------------------------------------------------------------------


def _sees_inactive_branches(user: Principal | None) -> bool:
    """Inactive branches are for those who run branches or stock; anyone sees the active ones."""
    return user is not None and (
        user.can(permissions.BRANCHES_MANAGE) or user.can(permissions.INVENTORY_READ)
    )


@router.post("/branches", status_code=status.HTTP_201_CREATED, response_model=BranchPublic)
def create_branch(body: BranchCreate, session: SessionDep, user: Manager) -> Any:
    return service.create_branch(session, **body.model_dump(), author_id=user.id)


@router.get(
    "/branches",
    response_model=listings.branches.page_type,
    summary="a page of branches; closed ones only for branches:manage or inventory:read",
)
async def list_branches(
    reader: ReaderDep,
    caller: OptionalCaller,
    query: Annotated[ListingQuery, Depends(listings.branches.query)],
) -> Response:
    def page() -> bytes:
        visible = _visible_branches(caller.principal(reader), query)
        return listings.branches.page_json(reader, visible)

    return await read_page(page, on=reader)


def _visible_branches(user: Principal | None, query: ListingQuery) -> ListingQuery:
    if _sees_inactive_branches(user):
        return query
    if query.filters.get("is_active") is False:
        if user is None:
            raise NotAuthenticated("log in to list closed branches")
        raise PermissionDenied(
            f"listing closed branches requires {permissions.BRANCHES_MANAGE!r} "
            f"or {permissions.INVENTORY_READ!r}"
        )
    return replace(query, filters={**query.filters, "is_active": True})


@router.get(
    "/branches/{branch_id}",
    response_model=BranchPublic,
    summary="one branch; an inactive one is 404 without branches:manage or inventory:read",
)
def get_branch(branch_id: IdPath, session: ReadSessionDep, user: OptionalUser) -> Any:
    branch = service.get_branch(session, branch_id)
    if not branch.is_active and not _sees_inactive_branches(user):
        # the same answer as for a branch that does not exist: nothing to learn from it
        raise UnknownBranch(f"there is no branch {branch_id}")
    return branch


@router.patch("/branches/{branch_id}", response_model=BranchPublic)
def update_branch(branch_id: IdPath, body: BranchUpdate, session: SessionDep, user: Manager) -> Any:
    changes = body.changes()
    return service.update_branch(session, branch_id, changes=changes, author_id=user.id)


# --- staff ---------------------------------------------------------------------------------


def _staff_public(staff: BranchStaff, email: str) -> StaffPublic:
    return StaffPublic(
        branch_id=staff.branch_id, user_id=staff.user_id, email=email, created_at=staff.created_at
    )


@router.get("/branches/{branch_id}/staff", response_model=list[StaffPublic])
def list_staff(branch_id: IdPath, session: SessionDep, _user: BranchReader) -> Any:
    return [_staff_public(staff, email) for staff, email in service.list_staff(session, branch_id)]


@router.put("/branches/{branch_id}/staff/{user_id}", response_model=StaffPublic)
def assign_staff(branch_id: IdPath, user_id: IdPath, session: SessionDep, _user: Manager) -> Any:
    staff, email = service.assign_staff(session, branch_id=branch_id, user_id=user_id)
    return _staff_public(staff, email)


@router.delete("/branches/{branch_id}/staff/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_staff(
    branch_id: IdPath, user_id: IdPath, session: SessionDep, _user: Manager
) -> Response:
    service.remove_staff(session, branch_id=branch_id, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- stock and ledger ----------------------------------------------------------------------


def _within_reach(user: Principal) -> dict[str, int] | None:
    """The scope keeping a stock listing to the branches ``user`` works at (none with
    ``inventory:read_all``)."""
    return None if user.can(permissions.INVENTORY_READ_ALL) else {"staff": user.id}


@router.get(
    "/stock",
    response_model=listings.stock.page_type,
    summary="a page of stock rows at the caller's branches",
)
async def list_stock(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as(permissions.INVENTORY_READ)],
    query: Annotated[ListingQuery, Depends(listings.stock.query)],
) -> Response:
    def page() -> bytes:
        return listings.stock.page_json(reader, query, _within_reach(caller.user(reader)))

    return await read_page(page, on=reader)


@router.get(
    "/movements",
    response_model=listings.movements.page_type,
    summary="a page of the stock ledger at the caller's branches, newest first by default",
)
async def list_movements(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as(permissions.INVENTORY_READ)],
    query: Annotated[ListingQuery, Depends(listings.movements.query)],
) -> Response:
    def page() -> bytes:
        return listings.movements.page_json(reader, query, _within_reach(caller.user(reader)))

    return await read_page(page, on=reader)


# --- stock changes -------------------------------------------------------------------------


@router.post("/receipts", status_code=status.HTTP_201_CREATED, response_model=ReceiptPublic)
def receive_stock(body: ReceiptCreate, session: SessionDep, user: Adjuster) -> Any:
    quantities = body.quantities()
    service.receive_stock(
        session,
        branch_id=body.branch_id,
        quantities=quantities,
        reference=body.reference,
        note=body.note,
        author_id=user.id,
        reach=_reach(user),
    )
    return ReceiptPublic(
        branch_id=body.branch_id,
        reference=body.reference,
        stock=_STOCK_ROWS.validate_python(
            service.stock_levels(session, body.branch_id, quantities)
        ),
    )


@router.post("/adjustments", status_code=status.HTTP_201_CREATED, response_model=AdjustmentPublic)
def adjust_stock(body: AdjustmentCreate, session: SessionDep, user: Adjuster) -> Any:
    service.adjust_stock(session, **body.model_dump(), author_id=user.id, reach=_reach(user))
    (stock,) = service.stock_levels(session, body.branch_id, [body.product_id])
    return AdjustmentPublic(stock=StockPublic.model_validate(stock))


@router.post("/transfers", status_code=status.HTTP_201_CREATED, response_model=TransferPublic)
def transfer_stock(body: TransferCreate, session: SessionDep, user: Transferrer) -> Any:
    quantities = body.quantities()
    reach = _reach(user)
    transfer_id = service.transfer_stock(
        session,
        from_branch_id=body.from_branch_id,
        to_branch_id=body.to_branch_id,
        quantities=quantities,
        reference=body.reference,
        note=body.note,
        author_id=user.id,
        reach=reach,
    )
    stock = _STOCK_ROWS.validate_python(
        [
            *service.stock_levels(session, body.from_branch_id, quantities),
            # the destination's stock only if the caller may read it too
            *service.stock_levels(session, body.to_branch_id, quantities, reach=reach),
        ]
    )
    return TransferPublic(
        transfer_id=transfer_id,
        from_branch_id=body.from_branch_id,
        to_branch_id=body.to_branch_id,
        reference=body.reference,
        stock=stock,
    )
