"""product: the name's indexes, built on its text shadow

``ix_product_name_id`` (the listing's sort by name) and ``ix_product_name_trgm`` (its text
search) are on ``name``, which the contract drops for the text shadow that
catalog_14450d837f42 adds: their equivalents are built on the shadow first, concurrently
(writes go on), in a revision of their own; the contract drops the old ones and gives these
their names.  PostgreSQL only: on SQLite the expand changed the column's type in place, its
indexes with it.

Revision ID: catalog_eaab3afa355b
Revises: catalog_14450d837f42
Create Date: 2026-12-07 09:00:01.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tecnorev.migrate import zero
from tecnorev.migrate.helpers import create_index_concurrently

revision: str = "catalog_eaab3afa355b"
down_revision: str | Sequence[str] | None = "catalog_14450d837f42"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHADOW = zero.shadow_column("product", "name")
# each index on name, and its stand-in on the shadow until the contract
SORT = ("ix_product_name_id", "ix_product_name_id_next")
TRIGRAM = ("ix_product_name_trgm", "ix_product_name_trgm_next")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    create_index_concurrently(op, SORT[1], "product", [SHADOW, "id"])
    create_index_concurrently(
        op,
        TRIGRAM[1],
        "product",
        [sa.text(f'lower("{SHADOW}") gin_trgm_ops')],
        postgresql_using="gin",
    )


def downgrade() -> None:
    # in the downgrade's transaction (a brief lock, no scan), so it can be rehearsed
    if op.get_context().dialect.name != "postgresql":
        return
    for _, stand_in in (TRIGRAM, SORT):
        op.drop_index(stand_in, table_name="product", if_exists=True)
