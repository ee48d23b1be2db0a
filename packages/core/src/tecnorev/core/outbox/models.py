"""The outbox table: one row per (event, subscriber), its delivery state and history."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from tecnorev.core.types import UTCDateTime, utcnow

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at ``available_at``
    DELIVERED = "delivered"  # the subscriber's work committed with this status
    DEAD = "dead"  # every attempt failed; waits for ``tecnorev events retry``


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "tecnorev_outbox"
    __table_args__ = (
        # what a dispatcher looks for: the due pending rows, oldest first
        sa.Index("ix_tecnorev_outbox_due", "status", "available_at", "id"),
    )

    # SQLite numbers rows itself only for an INTEGER primary key (it is 64-bit there)
    id: int | None = Field(default=None, primary_key=True, sa_type=_ID)
    event: str = Field(max_length=100)
    # "<module>:<dotted.path>:<function>", as the module's descriptor names it
    subscriber: str = Field(max_length=200)
    payload: dict[str, Any] = Field(sa_type=sa.JSON, nullable=False)
    request_id: str | None = Field(default=None, max_length=128)
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING,
        sa_type=sa.Enum(
            DeliveryStatus,
            name="outbox_status",
            native_enum=False,
            create_constraint=True,
            length=10,
            values_callable=lambda kinds: [kind.value for kind in kinds],
        ),
    )
    attempts: int = Field(default=0)
    available_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
