"""product: description becomes details, name becomes text, a unit for every product

The expand half of three changes the old release keeps working through: ``details`` beside
``description`` (kept equal both ways), a text shadow of ``name`` (kept equal, swapped in by
the contract, with the indexes catalog_eaab3afa355b builds on it), and ``unit``, whose NULLs
(the old release does not write it) read "each".

Revision ID: catalog_14450d837f42
Revises: catalog_5c0e7a21d9b4
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tecnorev.migrate import zero

revision: str = "catalog_14450d837f42"
down_revision: str | Sequence[str] | None = "catalog_5c0e7a21d9b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    zero.rename_column("product", "description", "details")
    zero.change_column_type("product", "name", "text")
    op.add_column("product", sa.Column("unit", sa.String(16), nullable=True))
    zero.set_not_null("product", "unit", fill="'each'")


def downgrade() -> None:
    zero.undo_set_not_null("product", "unit")
    op.drop_column("product", "unit")
    zero.undo_change_column_type("product", "name", old_type="varchar(200)")
    zero.undo_rename_column("product", "description", "details")
