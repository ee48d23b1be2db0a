"""Payments' collection, on the listing contract (``tecnorev.core.listing``)."""

from __future__ import annotations

from tecnorev.core.db import table_of
from tecnorev.core.listing import Listing, equals
from tecnorev.core.web.types import IdQuery
from tecnorev.payments.models import Payment, PaymentStatus
from tecnorev.payments.schemas import PaymentSummary
from tecnorev.sales.service import orders_readable_by

_payment = table_of(Payment)

payments = Listing(
    "payments",
    columns={
        name: _payment.c[name]
        for name in [
            "id",
            "order_id",
            "amount",
            "currency",
            "status",
            "provider",
            "provider_reference",
            "created_at",
            "updated_at",
        ]
    },
    item=PaymentSummary,
    sorts=("id",),
    default_sort="id",
    filters=(
        equals("order_id", _payment.c.order_id, IdQuery, "of this order"),
        equals("status", _payment.c.status, PaymentStatus, "in this state"),
    ),
    # a caller without orders:read_all: what hangs off the orders they may read
    scopes={"viewer": lambda user: _payment.c.order_id.in_(orders_readable_by(user))},
)
