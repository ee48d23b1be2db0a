"""Logistics endpoints: every change needs ``shipments:manage`` and acts on the shipments of
the caller's branches' orders (every branch's with ``shipments:read_all``).  A shipment is
read by whoever may read its order (a customer their own, branch staff their branches') and by
holders of ``shipments:read_all``; any other is not found."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tecnorev.auth.deps import CurrentUser, Principal, require_permission
from tecnorev.core.web import SessionDep
from tecnorev.core.web.types import INT4_MAX, IdPath, LimitQuery, text
from tecnorev.logistics import permissions, service
from tecnorev.logistics.models import ShipmentStatus
from tecnorev.logistics.schemas import ShipmentCreate, ShipmentPage, ShipmentPublic

router = APIRouter(prefix="/logistics")

ManagesShipments = Annotated[Principal, require_permission(permissions.SHIPMENTS_MANAGE)]
OrderQuery = Annotated[int | None, Query(ge=1, le=INT4_MAX, description="only this order's")]
CursorQuery = Annotated[text(64, min_length=1) | None, Query(description="next_cursor of a page")]


def _viewer(user: Principal) -> service.Viewer:
    return service.Viewer(user.id, read_all=user.can(permissions.SHIPMENTS_READ_ALL))


@router.post("/shipments", status_code=201)
def create_shipment(
    body: ShipmentCreate, session: SessionDep, user: ManagesShipments
) -> ShipmentPublic:
    shipment = service.create_shipment(
        session,
        order_id=body.order_id,
        carrier=body.carrier,
        tracking_number=body.tracking_number,
        actor_id=user.id,
        viewer=_viewer(user),
    )
    return ShipmentPublic.model_validate(shipment)


@router.get("/shipments")
def list_shipments(
    session: SessionDep,
    user: CurrentUser,
    order_id: OrderQuery = None,
    status: ShipmentStatus | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> ShipmentPage:
    shipments, next_cursor = service.list_shipments(
        session,
        viewer=_viewer(user),
        order_id=order_id,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return ShipmentPage(
        items=[ShipmentPublic.model_validate(s) for s in shipments], next_cursor=next_cursor
    )


@router.get("/shipments/{shipment_id}")
def get_shipment(shipment_id: IdPath, session: SessionDep, user: CurrentUser) -> ShipmentPublic:
    shipment = service.get_shipment(session, shipment_id=shipment_id, viewer=_viewer(user))
    return ShipmentPublic.model_validate(shipment)


@router.post("/shipments/{shipment_id}/ship", summary="hand over to the carrier: order SHIPPED")
def ship_shipment(
    shipment_id: IdPath, session: SessionDep, user: ManagesShipments
) -> ShipmentPublic:
    shipment = service.ship_shipment(
        session, shipment_id=shipment_id, actor_id=user.id, viewer=_viewer(user)
    )
    return ShipmentPublic.model_validate(shipment)


@router.post("/shipments/{shipment_id}/deliver", summary="delivered: order DELIVERED")
def deliver_shipment(
    shipment_id: IdPath, session: SessionDep, user: ManagesShipments
) -> ShipmentPublic:
    shipment = service.deliver_shipment(
        session, shipment_id=shipment_id, actor_id=user.id, viewer=_viewer(user)
    )
    return ShipmentPublic.model_validate(shipment)


@router.post("/shipments/{shipment_id}/cancel", summary="cancel a shipment not yet shipped")
def cancel_shipment(
    shipment_id: IdPath, session: SessionDep, user: ManagesShipments
) -> ShipmentPublic:
    shipment = service.cancel_shipment(
        session, shipment_id=shipment_id, actor_id=user.id, viewer=_viewer(user)
    )
    return ShipmentPublic.model_validate(shipment)
