"""Expand and contract: the two phases of a schema change that never stops a running release.

A revision says which phase it belongs to with a module-level ``phase`` (``"expand"``, the
default, or ``"contract"``).  *Expand* revisions only add: the release still running keeps
working on the new schema.  *Contract* revisions take the old side away (drop a column, a
table or a sync trigger, validate a constraint, set NOT NULL) and may run only once no replica
runs an older release of that module.

``tecnorev db upgrade heads`` applies expand revisions only on PostgreSQL and holds back each
contract revision with everything after it in its branch (and in branches that depend on it);
``tecnorev db contract`` (or ``upgrade --contract``) applies them, gated on the replicas'
reports (``tecnorev.migrate.replicas``) and on the backfills they wait for.  SQLite is one
process with no rolling deploy, so both phases run together there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from tecnorev.migrate.errors import MigrationError

if TYPE_CHECKING:
    from alembic.script import Script


class Phase(StrEnum):
    EXPAND = "expand"
    CONTRACT = "contract"


def phase_of(script: Script) -> Phase:
    """The phase a revision declares (expand when it declares none)."""
    declared = getattr(script.module, "phase", Phase.EXPAND.value)
    try:
        return Phase(declared)
    except ValueError:
        raise MigrationError(
            f"{script.path}: phase = {declared!r} is not a phase; use 'expand' (the default: "
            "additive, the running release keeps working) or 'contract' (takes the old side "
            "away once every replica runs the new release)"
        ) from None


def parents_of(script: Script) -> tuple[str, ...]:
    """Down revisions and depends_on: whatever must be applied before ``script``."""
    return tuple(script._all_down_revisions)


def held_back(pending: Iterable[str], scripts: Mapping[str, Script]) -> dict[str, str]:
    """Pending revisions an expand-only upgrade holds back -> the contract revision they wait
    for (a contract revision waits for itself).  ``pending`` may come in any order."""
    wanted = set(pending)
    found: dict[str, str] = {}
    done: set[str] = set()
    for start in sorted(wanted):
        stack = [(start, False)]
        while stack:
            revision, parents_done = stack.pop()
            script = scripts[revision]
            if parents_done:
                if phase_of(script) is Phase.CONTRACT:
                    found[revision] = revision
                else:
                    waits = [found[p] for p in parents_of(script) if p in found]
                    if waits:
                        found[revision] = min(waits)
                continue
            if revision in done:
                continue
            done.add(revision)
            stack.append((revision, True))
            stack.extend((p, False) for p in parents_of(script) if p in wanted and p not in done)
    return found


def phased(
    planner: Callable[..., Iterable[Any]],
    *,
    on_hold: Callable[[dict[str, str]], None] | None,
    up_front: Callable[[list[Script]], None],
    before_contract: Callable[[Script], None],
) -> Callable[..., Iterator[Any]]:
    """Wrap alembic's step planner.  With ``on_hold``, contract revisions and what comes after
    them are left out (and reported to it: revision -> the contract it waits for); otherwise
    ``up_front`` sees the revisions planned before any runs.  ``before_contract`` runs just
    before each contract revision, once the revisions before it are committed."""

    def planned(heads: Any, migration_context: Any) -> Iterator[Any]:
        steps = list(planner(heads, migration_context))
        if steps and all(getattr(s, "is_upgrade", False) for s in steps):
            scripts = {s.revision.revision: s.revision for s in steps}
            if on_hold is not None:
                held = held_back(scripts, scripts)
                if held:
                    on_hold(held)
                steps = [s for s in steps if s.revision.revision not in held]
            else:
                up_front(list(scripts.values()))
        for step in steps:
            if getattr(step, "is_upgrade", False) and phase_of(step.revision) is Phase.CONTRACT:
                before_contract(step.revision)
            yield step

    return planned


class ContractRefused(MigrationError):
    """Contract revisions cannot run yet: a replica of the old release, or a backfill."""


def check_contract(
    connection: Any,
    planned: Iterable[Script],
    scripts: Mapping[str, Script],
    registry: Any,
    *,
    replicas_only: bool = False,
) -> None:
    """Refuse the contract revisions of ``planned`` while a live replica runs code that
    predates one of them, or (unless ``replicas_only``) while a backfill applied before one
    of them is unfinished."""
    from tecnorev.migrate import backfill, replicas
    from tecnorev.migrate.project import project
    from tecnorev.migrate.revisions import module_of_script

    contracts = {
        s.revision: module_of_script(s, registry) or s.revision
        for s in planned
        if phase_of(s) is Phase.CONTRACT
    }
    if not contracts:
        return
    reasons = replicas.still_behind(replicas.live(connection), contracts, scripts)
    if not replicas_only:
        before: set[str] = set()
        for revision in contracts:
            before |= replicas.ancestry(revision, scripts)
        waiting = [b for b in backfill.unfinished(connection) if b.revision in before]
        reasons += [
            f"backfill {b.label} is unfinished ({b.progress()}): "
            f"'{project().command} backfill run {b.name}' finishes it"
            for b in waiting
        ]
    if reasons:
        listed = "\n  - ".join(reasons)
        raise ContractRefused(
            f"contract revision(s) {', '.join(sorted(contracts))} cannot run yet:\n  - {listed}\n"
            "A contract revision takes away what the previous release still uses: it runs once "
            "every replica runs the new release (replicas report every few seconds; a stopped "
            "one withdraws its report, a killed one's expires; "
            f"'{project().command} replicas' lists them) and the backfills before it are done."
        )
