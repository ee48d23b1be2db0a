"""Payments endpoints: recording a payment needs ``payments:manage`` and an order of the
caller's branches (any branch's with ``payments:read_all``).  A payment is read by whoever may
read its order (a customer their own, branch staff their branches') and by holders of
``payments:read_all``; any other is not found.  Refunds follow order cancellations (see
``tecnorev.payments.reactions``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tecnorev.auth.deps import CurrentUser, Principal, require_permission
from tecnorev.core.web import SessionDep
from tecnorev.core.web.types import INT4_MAX, IdPath, LimitQuery, text
from tecnorev.payments import permissions, service
from tecnorev.payments.models import PaymentStatus
from tecnorev.payments.schemas import PaymentCreate, PaymentPage, PaymentPublic

router = APIRouter(prefix="/payments")

ManagesPayments = Annotated[Principal, require_permission(permissions.PAYMENTS_MANAGE)]
OrderQuery = Annotated[int | None, Query(ge=1, le=INT4_MAX, description="only this order's")]
CursorQuery = Annotated[text(64, min_length=1) | None, Query(description="next_cursor of a page")]


def _viewer(user: Principal) -> service.Viewer:
    return service.Viewer(user.id, read_all=user.can(permissions.PAYMENTS_READ_ALL))


@router.post(
    "/payments",
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


@router.get("/payments")
def list_payments(
    session: SessionDep,
    user: CurrentUser,
    order_id: OrderQuery = None,
    status: PaymentStatus | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> PaymentPage:
    payments, next_cursor = service.list_payments(
        session,
        viewer=_viewer(user),
        order_id=order_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return PaymentPage(
        items=[PaymentPublic.model_validate(p) for p in payments], next_cursor=next_cursor
    )


@router.get("/payments/{payment_id}")
def get_payment(payment_id: IdPath, session: SessionDep, user: CurrentUser) -> PaymentPublic:
    payment = service.get_payment(session, payment_id=payment_id, viewer=_viewer(user))
    return PaymentPublic.model_validate(payment)
