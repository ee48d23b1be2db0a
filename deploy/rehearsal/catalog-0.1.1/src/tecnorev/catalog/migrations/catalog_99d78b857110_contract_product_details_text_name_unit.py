"""contract: product.description gone, name of type text, unit NOT NULL

Runs once no replica of catalog 0.1.0 is left (``tecnorev db contract``).

Revision ID: catalog_99d78b857110
Revises: catalog_14450d837f42
Create Date: 2026-12-06 09:00:01.000000
"""

from collections.abc import Sequence

from tecnorev.migrate import zero

revision: str = "catalog_99d78b857110"
down_revision: str | Sequence[str] | None = "catalog_14450d837f42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

phase = "contract"


def upgrade() -> None:
    zero.complete_rename_column("product", "description", "details")
    zero.complete_change_column_type("product", "name")
    zero.complete_set_not_null("product", "unit")


def downgrade() -> None:
    zero.uncomplete_set_not_null("product", "unit", fill="'each'")
    zero.uncomplete_change_column_type("product", "name", "text", old_type="varchar(200)")
    zero.uncomplete_rename_column("product", "description", "details")
