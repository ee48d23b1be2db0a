"""Merges of branches that write the same version-table SQL on every run.

When a revision joins several rows of ``alembic_version`` (a module's revision that
``depends_on`` another module's revision still at the top of its branch), Alembic picks which
row to UPDATE and which to DELETE from a ``set`` of revision ids, whose order follows
``PYTHONHASHSEED``: the offline plan (``upgrade --sql``) named a different row on each run.
Choosing by rule (the row of the revision's own branch is updated, the others deleted in
sorted order) fixes the SQL without changing the table it leaves.  Installed once, when the
engine's migration environment is loaded.
"""

from __future__ import annotations

from alembic.runtime.migration import RevisionStep

_original = RevisionStep.merge_branch_idents


def _merge_by_rule(self: RevisionStep, heads: set[str]) -> tuple[list[str], str, str]:
    deleted, updated, to = _original(self, heads)
    rows = sorted({*deleted, updated})
    own = self.revision.down_revision if self.is_upgrade else None
    if isinstance(own, str) and own in rows:  # its branch's row goes on as that branch's
        rows.remove(own)
        rows.append(own)
    return rows[:-1], rows[-1], to


def install() -> None:
    """Make merges choose their rows by rule (idempotent)."""
    if RevisionStep.merge_branch_idents is not _merge_by_rule:
        RevisionStep.merge_branch_idents = _merge_by_rule  # type: ignore[method-assign]
