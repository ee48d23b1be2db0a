"""What ``alembic_version`` holds, checked against the installed modules before any migration.

A revision recorded there whose module is not installed makes every Alembic command fail with
"Can't locate revision".  We say which module it is and offer ``forget``: the record moves to
``tecnorev_forgotten_revision`` (never deleted), the revisions it depended on are recorded as
applied again (Alembic only kept the dependent's row), and it comes back by itself when the
module is installed again.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError

from tecnorev.migrate.errors import MigrationError
from tecnorev.migrate.ledger import forgotten_revision, ledger_metadata, migration_log
from tecnorev.migrate.modules import Registry
from tecnorev.migrate.project import project
from tecnorev.migrate.revisions import module_hint
from tecnorev.migrate.types import utcnow

VERSION_TABLE = "alembic_version"


def recorded_versions(connection: sa.Connection) -> list[str]:
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return []
    rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return [r[0] for r in rows]


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.revision_map.get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def unknown_versions(connection: sa.Connection, scripts: ScriptDirectory) -> list[str]:
    return [r for r in recorded_versions(connection) if not _known(scripts, r)]


def _ledger_module(connection: sa.Connection, revision: str) -> str | None:
    if not sa.inspect(connection).has_table(migration_log.name):
        return None
    return connection.execute(
        sa.select(migration_log.c.module)
        .where(migration_log.c.revision == revision, migration_log.c.module.is_not(None))
        .order_by(migration_log.c.id.desc())
        .limit(1)
    ).scalar()


def unknown_module_message(connection: sa.Connection, unknown: Iterable[str]) -> str:
    lines = []
    modules = []
    for revision in unknown:
        module = _ledger_module(connection, revision) or module_hint(revision)
        modules.append(module or "<module>")
        label = f"module {module!r}" if module else "a module that is not installed"
        lines.append(f"revision {revision!r} of {label}")
    first = modules[0]
    return (
        f"{VERSION_TABLE} records {', '.join(lines)}, but that module is not installed, so "
        "no migration can run. Either install it again "
        f"(pip install tecnorev-{first}), or set it aside and keep migrating the installed "
        f"modules: {project().command} forget {first}  (its record is kept and restored when the "
        "module is installed again)."
    )


def check_recorded_versions(connection: sa.Connection, scripts: ScriptDirectory) -> None:
    unknown = unknown_versions(connection, scripts)
    if unknown:
        raise MigrationError(unknown_module_message(connection, unknown))


def _parents(connection: sa.Connection, revision: str) -> list[str]:
    if not sa.inspect(connection).has_table(migration_log.name):
        return []
    value = connection.execute(
        sa.select(migration_log.c.parents)
        .where(migration_log.c.revision == revision, migration_log.c.direction == "upgrade")
        .order_by(migration_log.c.id.desc())
        .limit(1)
    ).scalar()
    if value is None:
        value = (
            connection.execute(
                sa.select(forgotten_revision.c.parents).where(
                    forgotten_revision.c.revision == revision
                )
            ).scalar()
            if sa.inspect(connection).has_table(forgotten_revision.name)
            else None
        )
    return value.split() if value else []


def _heads_only(scripts: ScriptDirectory, revisions: set[str]) -> set[str]:
    """Drop every revision that is an ancestor of another one in the set."""
    covered: set[str] = set()
    for rev in revisions:
        for ancestor in scripts.iterate_revisions(rev, "base"):
            if ancestor.revision != rev:
                covered.add(ancestor.revision)
    return revisions - covered


def _write_versions(connection: sa.Connection, remove: Iterable[str], add: Iterable[str]) -> None:
    for rev in remove:
        connection.execute(
            sa.text(f"DELETE FROM {VERSION_TABLE} WHERE version_num = :v"), {"v": rev}
        )
    for rev in add:
        connection.execute(
            sa.text(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES (:v)"), {"v": rev}
        )


def stamp_versions(
    connection: sa.Connection,
    scripts: ScriptDirectory,
    *,
    remove: Iterable[str],
    add: Iterable[str],
) -> None:
    """Replace ``remove`` with ``add`` in alembic_version, keeping only heads of what is added."""
    from alembic.migration import MigrationContext

    MigrationContext.configure(connection)._ensure_version_table()
    _write_versions(connection, remove=list(remove), add=sorted(_heads_only(scripts, set(add))))


def forget_module(
    connection: sa.Connection, scripts: ScriptDirectory, registry: Registry, module: str
) -> tuple[list[str], list[str]]:
    """Set aside ``module``'s recorded revisions.  Returns (set aside, re-stamped)."""
    if module in registry:
        raise MigrationError(
            f"module {module!r} is installed; forget is for a module that was uninstalled. "
            f"To remove its schema, run: {project().command} downgrade {module}@base"
        )
    recorded = recorded_versions(connection)
    mine = [
        r
        for r in recorded
        if not _known(scripts, r) and (_ledger_module(connection, r) or module_hint(r)) == module
    ]
    if not mine:
        raise MigrationError(f"{VERSION_TABLE} records no revision of module {module!r}")
    implied: set[str] = set()
    for revision in mine:
        stack = _parents(connection, revision)
        if not stack:
            raise MigrationError(
                f"no ledger record of what revision {revision!r} depended on, so the revisions "
                "it implied cannot be re-recorded safely. Stamp the installed modules "
                f"explicitly instead: {project().command} stamp <module>@<revision> for each"
            )
        while stack:
            parent = stack.pop()
            if _known(scripts, parent):
                implied.add(parent)
            else:
                stack.extend(_parents(connection, parent))
    others = {r for r in recorded if r not in mine}
    known_others = {r for r in others if _known(scripts, r)}
    restamp = _heads_only(scripts, implied | known_others) - others
    ledger_metadata.create_all(connection, tables=[forgotten_revision])
    now = utcnow()
    for revision in mine:
        connection.execute(
            forgotten_revision.insert().values(
                revision=revision,
                module=module,
                parents=" ".join(_parents(connection, revision)),
                restamped=" ".join(sorted(restamp)),
                at=now,
            )
        )
    _write_versions(connection, remove=mine, add=sorted(restamp))
    return mine, sorted(restamp)


def restore_forgotten(connection: sa.Connection, scripts: ScriptDirectory) -> list[str]:
    """Put back revisions set aside earlier whose module is installed again."""
    if not sa.inspect(connection).has_table(forgotten_revision.name):
        return []
    rows = connection.execute(sa.select(forgotten_revision)).mappings().all()
    back = [row for row in rows if _known(scripts, row["revision"])]
    if not back:
        return []
    recorded = set(recorded_versions(connection))
    wanted = _heads_only(scripts, recorded | {row["revision"] for row in back})
    _write_versions(connection, remove=sorted(recorded - wanted), add=sorted(wanted - recorded))
    for row in back:
        connection.execute(
            forgotten_revision.delete().where(forgotten_revision.c.revision == row["revision"])
        )
    return [row["revision"] for row in back]
