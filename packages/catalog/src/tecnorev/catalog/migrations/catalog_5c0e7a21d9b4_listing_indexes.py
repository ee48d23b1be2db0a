"""listing indexes

The indexes the catalog's listings sort and search by: ``(name, id)`` and ``(price, id)`` on
products and ``(name, id)`` on categories serve every page of those sorts as one index range;
on PostgreSQL, trigram indexes (pg_trgm) on ``lower(name)`` and ``lower(sku)`` serve the
text search.  Built concurrently on PostgreSQL: writes to the tables go on meanwhile.

Revision ID: catalog_5c0e7a21d9b4
Revises: catalog_ab200303a0af
Create Date: 2026-12-06 15:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tecnorev.migrate.helpers import (
    create_index_concurrently,
    drop_index_concurrently,
    outside_transaction,
)

revision: str = "catalog_5c0e7a21d9b4"
down_revision: str | Sequence[str] | None = "catalog_ab200303a0af"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORTS = [
    ("ix_product_name_id", "product", ["name", "id"]),
    ("ix_product_price_id", "product", ["price", "id"]),
    ("ix_category_name_id", "category", ["name", "id"]),
]
TRIGRAMS = [("ix_product_name_trgm", "name"), ("ix_product_sku_trgm", "sku")]


def upgrade() -> None:
    for name, table, columns in SORTS:
        create_index_concurrently(op, name, table, columns)
    if op.get_context().dialect.name != "postgresql":
        return
    # a trusted extension since PostgreSQL 13: the database's owner may create it; outside
    # a transaction like the indexes, so a rerun after a failure starts from what is there
    with outside_transaction(op):
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in TRIGRAMS:
        create_index_concurrently(
            op, name, "product", [sa.text(f"lower({column}) gin_trgm_ops")], postgresql_using="gin"
        )


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        for name, _ in reversed(TRIGRAMS):
            drop_index_concurrently(op, name, "product")
        # pg_trgm stays: other schemas of the database may use it
    for name, table, _ in reversed(SORTS):
        drop_index_concurrently(op, name, table)
