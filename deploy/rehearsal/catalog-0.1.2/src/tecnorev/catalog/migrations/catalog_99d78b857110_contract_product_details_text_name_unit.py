"""contract: product.description gone, name of type text, unit NOT NULL

Runs once no replica of today's release is left (``tecnorev db contract``).  The indexes on
the varchar ``name`` go with it; their stand-ins on the text shadow (catalog_eaab3afa355b)
take their names.

Revision ID: catalog_99d78b857110
Revises: catalog_eaab3afa355b
Create Date: 2026-12-07 09:00:02.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tecnorev.migrate import zero

revision: str = "catalog_99d78b857110"
down_revision: str | Sequence[str] | None = "catalog_eaab3afa355b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

phase = "contract"

# each index on name, and its stand-in on the shadow (catalog_eaab3afa355b)
INDEXES = [
    ("ix_product_name_id", "ix_product_name_id_next"),
    ("ix_product_name_trgm", "ix_product_name_trgm_next"),
]


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    zero.complete_rename_column("product", "description", "details")
    if _postgres():
        for index, _ in INDEXES:
            op.drop_index(index, table_name="product")
    zero.complete_change_column_type("product", "name")
    if _postgres():
        for index, stand_in in INDEXES:
            op.execute(f'ALTER INDEX "{stand_in}" RENAME TO "{index}"')
    zero.complete_set_not_null("product", "unit")


def downgrade() -> None:
    zero.uncomplete_set_not_null("product", "unit", fill="'each'")
    zero.uncomplete_change_column_type("product", "name", "text", old_type="varchar(200)")
    if _postgres():
        # the text column is the shadow again, its indexes with it: stand-ins once more, and
        # the varchar name's own built again (in the transaction: a downgrade can be rehearsed)
        for index, stand_in in INDEXES:
            op.execute(f'ALTER INDEX "{index}" RENAME TO "{stand_in}"')
        op.create_index("ix_product_name_id", "product", ["name", "id"])
        op.create_index(
            "ix_product_name_trgm",
            "product",
            [sa.text("lower(name) gin_trgm_ops")],
            postgresql_using="gin",
        )
    zero.uncomplete_rename_column("product", "description", "details")
