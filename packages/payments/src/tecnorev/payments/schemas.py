"""Request and response models of the payments endpoints (no tables)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from typing_extensions import TypedDict

from tecnorev.core.web.types import Id, Money, MoneyOut, Text
from tecnorev.payments.models import PaymentStatus

Amount = Annotated[Money, Field(gt=0)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]  # ISO 4217, e.g. USD
Provider = Annotated[str, Text(50, min_length=1)]
ProviderReference = Annotated[str, Text(128, min_length=1)]


class PaymentCreate(BaseModel):
    """A payment the provider reports as succeeded."""

    model_config = ConfigDict(extra="forbid")

    order_id: Id
    amount: Amount
    currency: Currency | None = Field(
        default=None,
        description="ISO 4217 code; the store's (TECNOREV_CURRENCY), which orders are priced "
        "in, when left out; another is refused (currency_mismatch)",
    )
    provider: Provider
    provider_reference: ProviderReference


class PaymentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int
    amount: MoneyOut
    currency: str
    status: PaymentStatus
    provider: str
    provider_reference: str
    created_at: datetime
    updated_at: datetime


class PaymentSummary(TypedDict):
    id: int
    order_id: int
    amount: MoneyOut
    currency: str
    status: PaymentStatus
    provider: str
    provider_reference: str
    created_at: datetime
    updated_at: datetime
