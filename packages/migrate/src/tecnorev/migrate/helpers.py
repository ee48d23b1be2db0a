"""Operations for migration files that plain Alembic does not make safe by itself.

``create_index_concurrently`` is the supported way to add an index to a table that already
holds data (``tecnorev db lint`` rule TR101 asks for it)::

    from alembic import op

    from tecnorev.migrate.helpers import create_index_concurrently


    def upgrade() -> None:
        create_index_concurrently(op, "ix_product_name", "product", ["name"])

On PostgreSQL that is Alembic's non-transactional pattern::

    with op.get_context().autocommit_block():
        op.create_index(..., postgresql_concurrently=True, if_not_exists=True)

preceded by dropping an INVALID index of the same name: a concurrent build that failed
(duplicate rows for a unique index, a cancelled statement, a lost connection) leaves one behind,
and ``IF NOT EXISTS`` would then keep that unusable index and report success.  Put the call in a
revision of its own: ``autocommit_block`` commits whatever the revision did before it.

On SQLite it is a plain ``CREATE INDEX IF NOT EXISTS`` inside the run's transaction (SQLite has no
concurrent build, and an autocommit block there would commit every revision applied so far in
the run and release the lock that serialises migrators).

``outside_transaction`` is the block these helpers use, for a revision's own statements that
cannot run in a transaction (``CREATE EXTENSION`` before a concurrent build, ``VACUUM``).  When a
run is rehearsed (``tecnorev db downgrade --dry-run`` runs the downgrade and the upgrades back in
one transaction it rolls back, to count what would be lost) there is no transaction to leave: the
statements then run inside it, a concurrent build as a plain one, and are rolled back with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from types import ModuleType
    from typing import TypeAlias

    from alembic.operations import Operations

    # what a revision passes: ``alembic.op``, the module proxying the run's ``Operations``
    Op: TypeAlias = Operations | ModuleType

REHEARSAL_ATTRIBUTE = "tecnorev_rehearsal"
"""Set in ``Config.attributes`` while a run happens inside a transaction that is rolled back."""

_INVALID_INDEX = sa.text(
    "SELECT 1 FROM pg_index i "
    "JOIN pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relname = :name AND n.nspname = coalesce(:schema, current_schema()) "
    "AND NOT i.indisvalid"
)


def rehearsing(op: Op) -> bool:
    """Whether this run happens inside a transaction its caller rolls back."""
    config = op.get_context().config
    return config is not None and bool(config.attributes.get(REHEARSAL_ATTRIBUTE))


@contextmanager
def outside_transaction(op: Op) -> Iterator[bool]:
    """Alembic's ``autocommit_block``, except in a rehearsal (see the module's docstring).
    Yields whether the block really runs outside a transaction."""
    if rehearsing(op):
        yield False
        return
    with op.get_context().autocommit_block():
        yield True


def create_index_concurrently(
    op: Op,
    index_name: str,
    table_name: str,
    columns: Sequence[str | sa.TextClause],
    *,
    schema: str | None = None,
    unique: bool = False,
    **kw: Any,
) -> None:
    """Create an index without blocking writes, safe to run again after a failed attempt.

    ``kw`` is passed to ``op.create_index`` (``postgresql_where=...``, ``postgresql_using=...``).
    """
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.create_index(
            index_name, table_name, columns, schema=schema, unique=unique, if_not_exists=True, **kw
        )
        return
    with outside_transaction(op) as outside:
        # Offline (``--sql``, ``db lint``) there is no database to ask about a leftover.
        if outside and not context.as_sql and _is_invalid(op, index_name, schema):
            _drop_concurrently(op, index_name, table_name, schema)
        op.create_index(
            index_name,
            table_name,
            columns,
            schema=schema,
            unique=unique,
            postgresql_concurrently=outside,
            if_not_exists=True,
            **kw,
        )


def _is_invalid(op: Op, index_name: str, schema: str | None) -> bool:
    found = op.get_bind().execute(_INVALID_INDEX, {"name": index_name, "schema": schema})
    return found.first() is not None


def drop_index_concurrently(
    op: Op, index_name: str, table_name: str, *, schema: str | None = None
) -> None:
    """Drop an index without blocking reads and writes of its table (PostgreSQL), and do
    nothing when it is already gone (a downgrade run again after a failed attempt)."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        op.drop_index(index_name, table_name=table_name, schema=schema, if_exists=True)
        return
    with outside_transaction(op) as outside:
        op.drop_index(
            index_name,
            table_name=table_name,
            schema=schema,
            postgresql_concurrently=outside,
            if_exists=True,
        )


def _drop_concurrently(op: Op, index_name: str, table_name: str, schema: str | None) -> None:
    op.drop_index(
        index_name,
        table_name=table_name,
        schema=schema,
        postgresql_concurrently=True,
        if_exists=True,
    )
