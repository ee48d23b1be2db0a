"""The shared metadata's naming convention and the audit columns every business table carries."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from tecnorev.core.types import UTCDateTime, utcnow

# Stable constraint names let a downgrade drop exactly what its upgrade created, on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = SQLModel.metadata
metadata.naming_convention = NAMING_CONVENTION


class AuditMixin(SQLModel):
    """When a row was created and last changed, and by which user.

    The columns are built afresh for each table class (no shared ``sa_column``), and the user
    references become NULL when a user row is deleted so history never blocks a deletion.
    """

    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(
        default_factory=utcnow,
        sa_type=UTCDateTime,
        nullable=False,
        sa_column_kwargs={"onupdate": utcnow},
    )
    created_by_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
    updated_by_id: int | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL")
