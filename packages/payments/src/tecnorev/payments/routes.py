"""Payments endpoints: recording a payment needs ``payments:manage`` and an order of the
caller's branches (any branch's with ``payments:read_all``).  A payment is read by whoever may
read its order (a customer their own, branch staff their branches') and by holders of
``payments:read_all``; any other is not found.  Refunds follow order cancellations (see
``tecnorev.payments.reactions``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse

from tecnorev.auth.deps import Caller, CurrentUser, Principal, read_as, require_permission
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, Router, SessionDep
from tecnorev.core.web.types import IdPath
from tecnorev.payments import listings, permissions, service
from tecnorev.payments.schemas import PaymentCreate, PaymentPublic

router = Router(prefix="/payments")

ManagesPayments = Annotated[Principal, require_permission(permissions.PAYMENTS_MANAGE)]


def _viewer(user: Principal) -> service.Viewer:
    return service.Viewer(user.id, read_all=user.can(permissions.PAYMENTS_READ_ALL))


@router.post(
    "",
    status_code=201,
    summary="record a succeeded payment; paying the whole total confirms a pending order",
)
def record_payment(
    body: PaymentCreate, session: SessionDep, user: ManagesPayments
) -> PaymentPublic:
    payment = service.record_payment(
        session,
        order_id=body.order_id,
        amount=body.amount,
        currency=body.currency,
        provider=body.provider,
        provider_reference=body.provider_reference,
        actor_id=user.id,
        viewer=_viewer(user),
    )
    return PaymentPublic.model_validate(payment)


@router.get(
    "",
    response_model=listings.payments.page_type,
    summary="a page of the payments of the orders the caller may read",
)
async def list_payments(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as()],
    query: Annotated[ListingQuery, Depends(listings.payments.query)],
) -> Response:
    def page() -> bytes:
        viewer = _viewer(caller.user(reader))
        scope = None if viewer.read_all else {"viewer": viewer.user_id}
        return listings.payments.page_json(reader, query, scope)

    return await read_page(page, on=reader)


# The paths of releases before 0.2 (/payments/payments...), redirected for a while; 308 keeps
# the method and the body.  Not in the OpenAPI document.  Before /{payment_id}, which
# would take the word for an id.
@router.api_route(
    "/payments{rest:path}", methods=["GET", "POST"], include_in_schema=False, status_code=308
)
def former_paths(request: Request, rest: str) -> RedirectResponse:
    target = request.url.path.replace("/payments/payments", "/payments", 1)
    query = request.url.query
    return RedirectResponse(target + (f"?{query}" if query else ""), status_code=308)


@router.get("/{payment_id}")
def get_payment(payment_id: IdPath, session: SessionDep, user: CurrentUser) -> PaymentPublic:
    payment = service.get_payment(session, payment_id=payment_id, viewer=_viewer(user))
    return PaymentPublic.model_validate(payment)
