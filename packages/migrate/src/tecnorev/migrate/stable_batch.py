"""Batch operations ("move and copy", SQLite) that write the same SQL on every run.

Alembic's batch mode copies a table's constraints and indexes by iterating ``Table.constraints``
and ``Table.indexes``: sets of objects hashed by identity, so their order follows memory
addresses and changes from one process to the next, whatever ``PYTHONHASHSEED`` says.  The
copied table's ``CREATE TABLE`` and its ``CREATE INDEX`` statements came out in a different
order on each run, and an offline plan (``upgrade --sql``) could not be compared with the one
reviewed.  Sorting what Alembic gathered, by name, fixes the order without changing what is
created.  Installed once, when the engine's migration environment is loaded.
"""

from __future__ import annotations

from typing import Any

from alembic.operations.batch import ApplyBatchImpl

_original = ApplyBatchImpl._grab_table_elements


def _constraint_key(constraint: Any) -> tuple[str, str]:
    columns = ",".join(getattr(constraint, "columns", {}).keys())
    return type(constraint).__name__, columns or str(getattr(constraint, "sqltext", ""))


def _grab_sorted(self: ApplyBatchImpl) -> None:
    _original(self)
    self.named_constraints = dict(sorted(self.named_constraints.items()))
    self.unnamed_constraints.sort(key=_constraint_key)
    self.col_named_constraints = dict(sorted(self.col_named_constraints.items()))
    self.indexes = dict(sorted(self.indexes.items(), key=lambda item: str(item[0])))


def install() -> None:
    """Make batch copies order what they gather (idempotent)."""
    if ApplyBatchImpl._grab_table_elements is not _grab_sorted:
        ApplyBatchImpl._grab_table_elements = _grab_sorted  # type: ignore[method-assign]
