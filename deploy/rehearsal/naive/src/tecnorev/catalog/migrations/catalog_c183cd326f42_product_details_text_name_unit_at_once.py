"""product: description becomes details, name becomes text, a unit for every product (naive)

The same change as release 0.1.2's expand and contract revisions, written the single-revision
way: right for a deployment that stops the application, wrong for a rolling one, where the
replicas still running today's release read and write ``description`` once it is gone.  The rehearsal
shows those failures.

Revision ID: catalog_c183cd326f42
Revises: catalog_5c0e7a21d9b4
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "catalog_c183cd326f42"
down_revision: str | Sequence[str] | None = "catalog_5c0e7a21d9b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("product", "description", new_column_name="details")
    op.alter_column("product", "name", type_=sa.Text(), existing_type=sa.String(200))
    op.add_column(
        "product",
        sa.Column("unit", sa.String(16), nullable=False, server_default=sa.text("'each'")),
    )


def downgrade() -> None:
    op.drop_column("product", "unit")
    op.alter_column("product", "name", type_=sa.String(200), existing_type=sa.Text())
    op.alter_column("product", "details", new_column_name="description")
