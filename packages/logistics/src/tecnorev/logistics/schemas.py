"""Request and response models of the logistics endpoints (no tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict

from tecnorev.core.web.types import Id, Text
from tecnorev.logistics.models import ShipmentStatus

Carrier = Annotated[str, Text(100, min_length=1)]
TrackingNumber = Annotated[str, Text(100, min_length=1)]


class ShipmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Id
    carrier: Carrier
    tracking_number: TrackingNumber


class ShipmentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int
    carrier: str
    tracking_number: str
    status: ShipmentStatus
    shipped_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ShipmentSummary(TypedDict):
    id: int
    order_id: int
    carrier: str
    tracking_number: str
    status: ShipmentStatus
    shipped_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime
