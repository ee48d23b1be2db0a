"""Revisions kept with the ledger, so a database can go back to an older release of a module.

When a revision is applied, its file is stored beside the ledger (``tecnorev_revision_source``).
After ``pip install tecnorev-sales==<older>``, the database holds revisions whose files left
with the newer release; Alembic cannot run what it cannot read, so ``status`` would only say
"ahead".  ``tecnorev db downgrade sales@<installed head>`` runs the stored ``downgrade()`` of
those revisions instead, newest first, each in its own transaction with the ledger row and the
``alembic_version`` change, after checking that each one's imports are still installed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tecnorev.migrate import ledger
from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.project import project
from tecnorev.migrate.types import utcnow

if TYPE_CHECKING:
    from alembic.script import Script

    from tecnorev.migrate.modules import Registry
    from tecnorev.migrate.status import AppliedRecord

revision_source = ledger.revision_source
VERSION_TABLE = "alembic_version"


def store(connection: sa.Connection, revision: str, module: str | None, path: str | None) -> None:
    """Keep the file of ``revision`` as applied (the latest applied text wins)."""
    if not path:
        return
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    revision_source.create(connection, checkfirst=True)
    connection.execute(revision_source.delete().where(revision_source.c.revision == revision))
    connection.execute(
        revision_source.insert().values(
            revision=revision,
            module=module,
            checksum=ledger.file_checksum(path),
            source=source,
            stored_at=utcnow(),
        )
    )


@dataclass(frozen=True)
class StoredRevision:
    revision: str
    module: str | None
    source: str
    down_revisions: tuple[str, ...]
    checksum: str | None = None

    def tampering(self, applied_checksum: str | None) -> str | None:
        """Why this text cannot be trusted to be what was applied, or ``None``: the store's
        own checksum must match the text, and the ledger's checksum of the application must
        match too (raw sha256 accepted for ledger rows older than normalised checksums)."""
        text = ledger.sha256_text(self.source)
        if self.checksum and self.checksum != text:
            return (
                f"the stored source of {self.revision} was changed after it was stored (sha256 "
                f"{self.checksum[:12]} recorded, {text[:12]} now)"
            )
        raw = hashlib.sha256(self.source.encode("utf-8", errors="surrogateescape")).hexdigest()
        if applied_checksum and applied_checksum not in (text, raw):
            return (
                f"the stored source of {self.revision} is not the text the ledger says was "
                f"applied (sha256 {applied_checksum[:12]} applied, {text[:12]} stored)"
            )
        return None

    def missing_imports(self) -> list[str]:
        """What the revision imports that is not installed now."""
        missing = []
        for name in _imports(self.source):
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(name)
        return missing


def _imports(source: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return sorted(set(names))


def _down_revisions(source: str) -> tuple[str, ...]:
    for node in ast.parse(source).body:
        target: ast.expr
        if isinstance(node, ast.Assign):
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "down_revision" and node.value:
            value = ast.literal_eval(node.value)
            if value is None:
                return ()
            return (value,) if isinstance(value, str) else tuple(value)
    return ()


def load(connection: sa.Connection, revisions: Iterable[str]) -> dict[str, StoredRevision]:
    wanted = list(revisions)
    if not wanted or not sa.inspect(connection).has_table(revision_source.name):
        return {}
    query = sa.select(revision_source).where(revision_source.c.revision.in_(wanted))
    return {
        row.revision: StoredRevision(
            row.revision, row.module, row.source, _down_revisions(row.source), row.checksum
        )
        for row in connection.execute(query)
    }


@dataclass(frozen=True)
class StepBack:
    """The revisions of one module the installed code lacks, newest first, with the installed
    revision they sit on; or why they cannot be run from the store."""

    module: str
    chain: tuple[StoredRevision, ...]
    lands_on: str | None  # the installed revision the module is left at (None: base)
    refusal: str | None = None

    @property
    def revisions(self) -> list[str]:
        return [s.revision for s in self.chain]


def plan(
    connection: sa.Connection,
    module: str,
    versions: Iterable[str],
    scripts: Mapping[str, Script],
    applied: Mapping[str, AppliedRecord],
) -> StepBack | None:
    """How ``module`` goes back to the installed code: ``None`` when the database is not
    ahead of it.  ``versions`` are alembic_version's rows; ``applied`` the ledger's last
    applying row per revision (its module and parents)."""
    heads = [v for v in versions if v not in scripts and _owner(v, applied) == module]
    if not heads:
        return None
    command = project().command
    if len(heads) > 1:
        return StepBack(module, (), None, f"{module} has several heads the code lacks")
    chain: list[StoredRevision] = []
    current: str | None = heads[0]
    while current is not None and current not in scripts:
        stored = load(connection, [current]).get(current)
        if stored is None:
            return StepBack(
                module,
                tuple(chain),
                None,
                f"{current} has no stored source (applied before sources were kept): install "
                f"the release of {module} that ships it to downgrade with its file",
            )
        entry = applied.get(current)
        tampered = stored.tampering(entry.checksum if entry is not None else None)
        if tampered:
            return StepBack(
                module,
                tuple(chain),
                None,
                f"{tampered}: install the release of {module} that ships {current} to "
                "downgrade with its file",
            )
        missing = stored.missing_imports()
        if missing:
            return StepBack(
                module,
                tuple(chain),
                None,
                f"the stored {current} imports {', '.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not installed now: install the "
                f"release of {module} that ships {current} to downgrade with it, or install "
                f"what it imports",
            )
        chain.append(stored)
        in_branch = [p for p in stored.down_revisions if _owner(p, applied) == module]
        if len(in_branch) > 1:
            return StepBack(
                module, tuple(chain), None, f"{current} merges two heads: {command} cannot "
                "undo a merge from its stored source"
            )  # fmt: skip
        current = in_branch[0] if in_branch else None
    gone = {s.revision for s in chain}
    for other in versions:
        parents = set(applied[other].parents) if other in applied else set()
        if other not in gone and parents & gone:
            return StepBack(
                module,
                tuple(chain),
                current,
                f"{other} ({_owner(other, applied)}) depends on "
                f"{', '.join(sorted(parents & gone))}: downgrade that module first",
            )
    return StepBack(module, tuple(chain), current)


def _owner(revision: str, applied: Mapping[str, AppliedRecord]) -> str | None:
    entry = applied.get(revision)
    if entry is not None and entry.module:
        return entry.module
    from tecnorev.migrate.revisions import module_hint

    return module_hint(revision)


def run_back(connection: sa.Connection, step: StepBack, registry: Registry) -> None:
    """Run the stored ``downgrade()`` of ``step``'s revisions, newest first, each in its own
    transaction with its ledger row and ``alembic_version`` change (a savepoint inside a
    caller's transaction: a downgrade's rehearsal, rolled back)."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from tecnorev.migrate.safety import LockTimeout

    if step.refusal:
        raise MigrationError(
            f"cannot take {step.module} back to the installed code: {step.refusal}"
        )
    policy = LockTimeout.from_env() if connection.dialect.name == "postgresql" else None
    versions = sa.table(VERSION_TABLE, sa.column("version_num", sa.String))
    for index, stored in enumerate(step.chain):
        parent = step.chain[index + 1].revision if index + 1 < len(step.chain) else step.lands_on
        namespace = types.ModuleType(f"tecnorev_stored_{stored.revision}")
        own = connection.begin_nested() if connection.in_transaction() else connection.begin()
        with own:
            if policy is not None and policy.enabled:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = {policy.milliseconds}")
            context = MigrationContext.configure(
                connection, opts={"render_as_batch": True, "transactional_ddl": True}
            )
            with Operations.context(context):
                exec(compile(stored.source, f"<stored {stored.revision}>", "exec"), vars(namespace))
                namespace.downgrade()
            connection.execute(versions.delete().where(versions.c.version_num == stored.revision))
            if parent is not None:
                connection.execute(versions.insert().values(version_num=parent))
            ledger.ensure_tables(connection)
            distribution = registry[step.module].distribution if step.module in registry else None
            ledger.record(
                connection,
                revision=stored.revision,
                module=step.module,
                direction="downgrade",
                distribution=distribution,
                parents=" ".join(stored.down_revisions),
                checksum=ledger.sha256_text(stored.source),
                note="ran the stored downgrade(): its file is not installed",
            )
