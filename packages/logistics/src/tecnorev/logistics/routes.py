"""Logistics endpoints: every change needs ``shipments:manage`` and acts on the shipments of
the caller's branches' orders (every branch's with ``shipments:read_all``).  A shipment is
read by whoever may read its order (a customer their own, branch staff their branches') and by
holders of ``shipments:read_all``; any other is not found."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Response

from tecnorev.auth.deps import Caller, CurrentUser, Principal, read_as, require_permission
from tecnorev.core.listing import ListingQuery, read_page
from tecnorev.core.web import ReaderDep, Router, SessionDep
from tecnorev.core.web.types import IdPath
from tecnorev.logistics import listings, permissions, service
from tecnorev.logistics.schemas import ShipmentCreate, ShipmentPublic

router = Router(prefix="/logistics")

ManagesShipments = Annotated[Principal, require_permission(permissions.SHIPMENTS_MANAGE)]


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


@router.get(
    "/shipments",
    response_model=listings.shipments.page_type,
    summary="a page of the shipments of the orders the caller may read",
)
async def list_shipments(
    reader: ReaderDep,
    caller: Annotated[Caller, read_as()],
    query: Annotated[ListingQuery, Depends(listings.shipments.query)],
) -> Response:
    def page() -> bytes:
        viewer = _viewer(caller.user(reader))
        scope = None if viewer.read_all else {"viewer": viewer.user_id}
        return listings.shipments.page_json(reader, query, scope)

    return await read_page(page, on=reader)


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
