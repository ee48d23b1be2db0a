"""Where each module's schema stands: what the database records, set against the code.

``read_status`` answers it for ``tecnorev db status``, the API's ``/ready`` and deploy gates;
``read_log`` returns the ledger for ``tecnorev db log``.  Both read ``alembic_version``, the
ledger and the set-aside record in a few small queries and import no models, so they cost
about what ``alembic current`` costs.  They only read: nothing is created, not even a missing
SQLite file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tecnorev.migrate import ledger
from tecnorev.migrate.connect import bounded_engine, unreachable
from tecnorev.migrate.errors import BrokenRevision
from tecnorev.migrate.exitcodes import ExitCode as Code
from tecnorev.migrate.ledger import distribution_version, forgotten_revision, migration_log
from tecnorev.migrate.phases import Phase, held_back, phase_of
from tecnorev.migrate.project import project
from tecnorev.migrate.revisions import module_hint

if TYPE_CHECKING:
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.modules import Registry
    from tecnorev.migrate.squash import Chosen

VERSION_TABLE = "alembic_version"
# Ledger directions after which a revision counts as applied (its file as it was then).
_APPLYING = ("upgrade", "stamp-upgrade", "repair")


class State(StrEnum):
    UP_TO_DATE = "up to date"
    PENDING = "pending"
    AHEAD = "database ahead of code"
    NOT_INSTALLED = "not installed"
    SET_ASIDE = "set aside"
    EDITED = "edited since applied"
    # on a revision inside a squashed range whose originals are no longer installed
    STRANDED = "inside a squashed range"
    # expand applied; only contract revisions wait (tecnorev db contract): both releases serve
    CONTRACT_PENDING = "contract pending"


class ExitCode:
    """``tecnorev db status`` exit codes, from the one table (:mod:`.exitcodes`); with several
    findings the most urgent wins (``_URGENCY``)."""

    # every installed module at its head, or with only contract revisions to apply
    # (set-aside modules are fine)
    UP_TO_DATE = Code.OK
    PENDING = Code.FAILED  # revisions to apply: tecnorev db upgrade heads
    UNAVAILABLE = Code.UNAVAILABLE  # the database cannot be read
    # the database has revisions the installed code lacks (ahead, not installed, stranded)
    AHEAD = Code.AHEAD
    EDITED = Code.BROKEN  # an applied migration file was changed afterwards


_URGENCY = (ExitCode.UP_TO_DATE, ExitCode.PENDING, ExitCode.AHEAD, ExitCode.EDITED)


@dataclass(frozen=True)
class AppliedRecord:
    """The ledger's last record of a revision being applied."""

    revision: str
    module: str | None
    distribution_version: str | None
    checksum: str | None
    parents: tuple[str, ...]
    at: datetime | None


@dataclass(frozen=True)
class DatabaseRecord:
    """What the database says was applied, in the raw."""

    versions: tuple[str, ...] = ()
    applied: Mapping[str, AppliedRecord] = field(default_factory=dict)
    forgotten: Mapping[str, str] = field(default_factory=dict)  # revision -> module


@dataclass(frozen=True)
class EditedRevision:
    revision: str
    path: str
    checksum_applied: str
    checksum_now: str | None  # None: the file is gone
    applied_at: datetime | None


@dataclass(frozen=True)
class ModuleStatus:
    module: str
    state: State
    installed: bool
    distribution: str | None
    version: str | None  # installed version, or the one the ledger last saw
    database_revisions: tuple[str, ...]
    code_heads: tuple[str, ...]
    pending_revisions: tuple[str, ...] = ()
    edited: tuple[EditedRevision, ...] = ()
    head_applied: bool = False
    # ahead of the code: how to go back to it from the stored sources, or why not
    back_to: str | None = None
    back_refused: str | None = None
    note: str | None = None  # what to do, where the state needs more than its name
    # pending contract revisions (held back by upgrade until tecnorev db contract)
    contract_revisions: tuple[str, ...] = ()

    @property
    def pending(self) -> int:
        return len(self.pending_revisions)

    @property
    def serves(self) -> bool:
        """The installed code can run on this database: every revision it needs is applied
        (contract revisions only take the old release's side away)."""
        return self.head_applied or self.state is State.CONTRACT_PENDING

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "state": self.state.value,
            "installed": self.installed,
            "distribution": self.distribution,
            "version": self.version,
            "database_revisions": list(self.database_revisions),
            "code_heads": list(self.code_heads),
            "pending": self.pending,
            "pending_revisions": list(self.pending_revisions),
            "edited_revisions": [
                {
                    "revision": e.revision,
                    "path": e.path,
                    "checksum_applied": e.checksum_applied,
                    "checksum_now": e.checksum_now,
                    "applied_at": e.applied_at.isoformat() if e.applied_at else None,
                }
                for e in self.edited
            ],
            "back_to": self.back_to,
            "back_refused": self.back_refused,
            "note": self.note,
            "contract_revisions": list(self.contract_revisions),
        }


_EXIT_FOR_STATE = {
    State.UP_TO_DATE: ExitCode.UP_TO_DATE,
    State.SET_ASIDE: ExitCode.UP_TO_DATE,
    State.CONTRACT_PENDING: ExitCode.UP_TO_DATE,
    State.PENDING: ExitCode.PENDING,
    State.AHEAD: ExitCode.AHEAD,
    State.NOT_INSTALLED: ExitCode.AHEAD,
    State.STRANDED: ExitCode.AHEAD,
    State.EDITED: ExitCode.EDITED,
}


@dataclass(frozen=True)
class StatusReport:
    modules: tuple[ModuleStatus, ...]

    @property
    def exit_code(self) -> int:
        found = [_EXIT_FOR_STATE[m.state] for m in self.modules]
        return int(max(found, key=_URGENCY.index, default=ExitCode.UP_TO_DATE))

    @property
    def ready(self) -> bool:
        """Every installed module's code can run (a database ahead still serves, and one with
        only contract revisions pending)."""
        return all(m.serves for m in self.modules if m.installed)

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "ready": self.ready,
            "modules": [m.to_json() for m in self.modules],
        }


# -- reading the database ------------------------------------------------------------------


def configured_url(config: Any) -> str:
    """The database a command works on: ``sqlalchemy.url`` when a caller set one on the
    Config, else DATABASE_URL / .env (as the migration environment decides, without importing
    it: it pulls in autogenerate)."""
    from tecnorev.migrate.project import url_of

    return url_of(config)


@contextmanager
def open_database(url: str) -> Iterator[sa.Connection | None]:
    """A read-only look at ``url``; ``None`` for a SQLite file that does not exist yet (so
    asking about a database never creates one)."""
    parsed = sa.make_url(url)
    path = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and path not in ("", ":memory:")
        and not path.startswith("file:")
        and not Path(path).is_file()
    ):
        yield None
        return
    engine = bounded_engine(parsed, poolclass=sa.pool.NullPool)
    try:
        try:
            connection = engine.connect()
        except sa.exc.OperationalError as exc:
            raise unreachable(parsed, exc) from exc
        with connection:
            try:
                yield connection
            finally:
                connection.rollback()
    finally:
        engine.dispose()


def read_record(connection: sa.Connection | None) -> DatabaseRecord:
    if connection is None:
        return DatabaseRecord()
    tables = set(sa.inspect(connection).get_table_names())
    versions: tuple[str, ...] = ()
    if VERSION_TABLE in tables:
        rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
        versions = tuple(sorted(r[0] for r in rows))
    applied = last_applied(connection) if migration_log.name in tables else {}
    forgotten: dict[str, str] = {}
    if forgotten_revision.name in tables:
        query = sa.select(forgotten_revision.c.revision, forgotten_revision.c.module)
        forgotten = {rev: module for rev, module in connection.execute(query)}
    return DatabaseRecord(versions, applied, forgotten)


def last_applied(connection: sa.Connection) -> dict[str, AppliedRecord]:
    log = migration_log.c
    last = (
        sa.select(sa.func.max(log.id))
        .where(log.direction.in_(_APPLYING))
        .group_by(log.revision)
        .scalar_subquery()
    )
    query = sa.select(
        log.revision, log.module, log.distribution_version, log.checksum, log.parents, log.at
    ).where(log.id.in_(last))
    return {
        row.revision: AppliedRecord(
            revision=row.revision,
            module=row.module,
            distribution_version=row.distribution_version,
            checksum=row.checksum,
            parents=tuple((row.parents or "").split()),
            at=row.at,
        )
        for row in connection.execute(query)
    }


# -- the code ------------------------------------------------------------------------------


def all_scripts(scripts: ScriptDirectory) -> dict[str, Script]:
    """Every revision of the installed modules by id, without alembic's topological walk
    (which grows much faster than the number of revisions)."""
    from alembic.script import Script

    try:
        revision_map = scripts.revision_map._revision_map
    except KeyError as exc:
        raise BrokenRevision(_missing_revision(scripts, str(exc.args[0]))) from exc
    except Exception as exc:
        raise BrokenRevision(
            f"the installed modules' revisions cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
    # a ScriptDirectory's map holds Scripts (alembic types them as their base, Revision)
    return {
        key: script
        for key, script in revision_map.items()
        if isinstance(script, Script) and key == script.revision
    }


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _missing_revision(scripts: ScriptDirectory, missing: str) -> str:
    """Alembic only says ``KeyError``: name the files that refer to the missing revision."""
    naming = [
        script.path
        for script in scripts._load_revisions()
        if missing in (*script._versioned_down_revisions, *_as_tuple(script.dependencies))
    ]
    where = f" (named in {', '.join(naming)})" if naming else ""
    return (
        f"revision {missing!r} is named as a down_revision or in depends_on{where}, but no "
        "installed module has it: install the module that ships it, or correct the reference"
    )


def owners_of(scripts: Mapping[str, Script], registry: Registry) -> dict[str, str]:
    """Revision id -> module, from the folder its file lies in (string paths: pathlib costs
    more than the rest of ``status`` at a few thousand revisions)."""
    folders = {os.path.realpath(m.migrations_path()): m.name for m in registry.modules}
    found: dict[str, str] = {}
    resolved: dict[str, str] = {}
    for revision, script in scripts.items():
        directory = os.path.dirname(script.path)
        real = resolved.get(directory)
        if real is None:
            real = resolved[directory] = os.path.realpath(directory)
        owner = folders.get(real)
        if owner is not None:
            found[revision] = owner
    return found


# -- comparing the two ---------------------------------------------------------------------


@dataclass
class _Applied:
    known: set[str]  # applied revisions the code has
    unknown: set[str]  # applied revisions it does not (newer code, uninstalled module)


def _applied(record: DatabaseRecord, scripts: Mapping[str, Script]) -> _Applied:
    """Everything applied: the recorded heads and their ancestors, following the ledger's
    parents through revisions the code does not have."""
    # A set-aside revision of a module installed again comes back on the next upgrade without
    # running anything: its schema is there, so it counts as applied.
    stack = [*record.versions, *(r for r in record.forgotten if r in scripts)]
    seen = _Applied(set(), set())
    while stack:
        revision = stack.pop()
        if revision in seen.known or revision in seen.unknown:
            continue
        script = scripts.get(revision)
        if script is not None:
            seen.known.add(revision)
            stack.extend(script._all_down_revisions)
        else:
            seen.unknown.add(revision)
            entry = record.applied.get(revision)
            stack.extend(entry.parents if entry else ())
    return seen


def _module_of_unknown(revision: str, record: DatabaseRecord) -> str:
    entry = record.applied.get(revision)
    return (
        (entry.module if entry else None)
        or record.forgotten.get(revision)
        or module_hint(revision)
        or revision
    )


def _in_branch_order(revisions: Iterable[str], scripts: Mapping[str, Script]) -> list[str]:
    """Base first: each revision after its parents in the same branch (iterative: a branch
    can be longer than Python's recursion limit)."""
    wanted = set(revisions)
    ordered: list[str] = []
    done: set[str] = set()
    for start in sorted(wanted):
        stack = [(start, False)]
        while stack:
            revision, parents_done = stack.pop()
            if parents_done:
                ordered.append(revision)
                continue
            if revision in done:
                continue
            done.add(revision)
            stack.append((revision, True))
            parents = scripts[revision]._versioned_down_revisions
            stack.extend((p, False) for p in parents if p in wanted and p not in done)
    return ordered


def _edited(
    revisions: Iterable[str], record: DatabaseRecord, scripts: Mapping[str, Script]
) -> list[EditedRevision]:
    edited = []
    for revision in sorted(revisions):
        entry = record.applied.get(revision)
        if entry is None or not entry.checksum:
            continue  # applied before the ledger existed, or by plain SQL: nothing to compare
        path = scripts[revision].path
        if not ledger.matches(entry.checksum, path):
            now = ledger.file_checksum(path)
            edited.append(EditedRevision(revision, path, entry.checksum, now, entry.at))
    return edited


def _installed_status(
    name: str,
    registry: Registry,
    mine: list[str],
    applied: _Applied,
    ahead: list[str],
    record: DatabaseRecord,
    scripts: Mapping[str, Script],
) -> ModuleStatus:
    module = registry[name]
    applied_here = [r for r in mine if r in applied.known]
    covered = {p for r in applied_here for p in scripts[r]._versioned_down_revisions}
    for revision in ahead:
        entry = record.applied.get(revision)
        covered.update(entry.parents if entry else ())
    database = sorted(set(applied_here) - covered) + sorted(ahead)
    heads = sorted(r for r in mine if scripts[r].is_head)
    pending = _in_branch_order((r for r in mine if r not in applied.known), scripts)
    edited = _edited(applied_here, record, scripts)
    contracts = tuple(r for r in pending if phase_of(scripts[r]) is Phase.CONTRACT)
    note = None
    if edited:
        state = State.EDITED
    elif ahead:
        state = State.AHEAD
    elif pending and len(contracts) == len(pending):
        state = State.CONTRACT_PENDING
        note = (
            f"'{project().command} contract {name}' applies {', '.join(contracts)} once every "
            "replica runs the new release"
        )
    elif pending:
        state = State.PENDING
        held = held_back(pending, scripts)
        waiting = sorted({held[r] for r in pending if r in held and r not in contracts})
        if waiting:
            note = (
                f"revisions after contract {', '.join(waiting)} wait for it: "
                f"'{project().command} contract {name}' first (once every replica runs the "
                "release that brought it)"
            )
    else:
        state = State.UP_TO_DATE
    return ModuleStatus(
        module=name,
        state=state,
        installed=True,
        distribution=module.distribution,
        version=distribution_version(module.distribution),
        database_revisions=tuple(database),
        code_heads=tuple(heads),
        pending_revisions=tuple(pending),
        edited=tuple(edited),
        head_applied=all(h in applied.known for h in heads),
        note=note,
        contract_revisions=contracts,
    )


def _absent_status(
    name: str, revisions: list[str], state: State, record: DatabaseRecord
) -> ModuleStatus:
    entries = [record.applied[r] for r in revisions if r in record.applied]
    last = max(entries, key=lambda e: e.at.timestamp() if e.at else 0.0, default=None)
    return ModuleStatus(
        module=name,
        state=state,
        installed=False,
        distribution=None,
        version=last.distribution_version if last else None,
        database_revisions=tuple(sorted(revisions)),
        code_heads=(),
    )


def build_status(
    record: DatabaseRecord, scripts: Mapping[str, Script], registry: Registry
) -> StatusReport:
    """Compare ``record`` with the installed modules' revisions (no database access)."""
    from dataclasses import replace

    from tecnorev.migrate.squash import as_seen

    record = replace(record, versions=as_seen(record.versions, scripts))
    owners = owners_of(scripts, registry)
    by_module: dict[str, list[str]] = {name: [] for name in registry.names}
    for revision, owner in owners.items():
        by_module[owner].append(revision)
    applied = _applied(record, scripts)

    ahead: dict[str, list[str]] = {}
    absent: dict[str, list[str]] = {}
    for revision in record.versions:
        if revision in scripts:
            continue
        owner = _module_of_unknown(revision, record)
        (ahead if owner in registry else absent).setdefault(owner, []).append(revision)
    set_aside: dict[str, list[str]] = {}
    for revision, owner in record.forgotten.items():
        if revision not in scripts and owner not in absent:
            set_aside.setdefault(owner, []).append(revision)

    rows = [
        _installed_status(
            name, registry, by_module[name], applied, ahead.get(name, []), record, scripts
        )
        for name in registry.names
    ]
    rows += [_absent_status(n, absent[n], State.NOT_INSTALLED, record) for n in sorted(absent)]
    rows += [_absent_status(n, set_aside[n], State.SET_ASIDE, record) for n in sorted(set_aside)]
    return StatusReport(tuple(rows))


def read_status(
    connection: sa.Connection | None, scripts: ScriptDirectory, registry: Registry
) -> StatusReport:
    """Each module's state in the database behind ``connection`` (``None``: no database yet)."""
    from dataclasses import replace

    from tecnorev.migrate import squash, stored

    record = read_record(connection)
    chosen = squash.choose_view(scripts, record.versions)
    found = all_scripts(scripts)
    report = build_status(record, found, registry)
    if chosen.stranded:
        report = _mark_stranded(report, chosen, found, registry)
    if connection is None or not any(m.state is State.AHEAD for m in report.modules):
        return report
    rows = []
    for row in report.modules:
        step = None
        if row.state is State.AHEAD:
            step = stored.plan(connection, row.module, record.versions, found, record.applied)
        if step is not None:
            row = replace(row, back_to=step.lands_on or "base", back_refused=step.refusal)
        rows.append(row)
    return StatusReport(tuple(rows))


def _mark_stranded(
    report: StatusReport, chosen: Chosen, found: Mapping[str, Script], registry: Registry
) -> StatusReport:
    from dataclasses import replace

    from tecnorev.migrate.revisions import module_of_script
    from tecnorev.migrate.squash import stranded_message

    notes = {
        module_of_script(found[squash.revision], registry): (
            inside,
            stranded_message(squash, inside),
        )
        for squash, inside in chosen.stranded
    }
    rows = []
    for row in report.modules:
        if row.module in notes:
            inside, note = notes[row.module]
            row = replace(row, state=State.STRANDED, database_revisions=tuple(inside), note=note)
        rows.append(row)
    return StatusReport(tuple(rows))


# -- the ledger ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    at: datetime
    module: str | None
    revision: str
    direction: str
    distribution_version: str | None
    checksum: str | None
    parents: str
    host: str | None
    os_user: str | None
    duration_ms: int | None
    note: str | None  # a failed attempt's error, a repair's reason

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "module": self.module,
            "revision": self.revision,
            "direction": self.direction,
            "distribution_version": self.distribution_version,
            "checksum": self.checksum,
            "parents": self.parents.split(),
            "host": self.host,
            "user": self.os_user,
            "duration_ms": self.duration_ms,
            "note": self.note,
        }


def read_log(
    connection: sa.Connection | None, module: str | None = None, limit: int | None = None
) -> list[LedgerEntry]:
    """Ledger rows, oldest first; ``limit`` keeps the newest ones."""
    if connection is None or not sa.inspect(connection).has_table(migration_log.name):
        return []
    log = migration_log.c
    notes = ledger.has_notes(connection)
    columns = [
        getattr(log, f.name) if f.name != "note" or notes else sa.null().label("note")
        for f in fields(LedgerEntry)
    ]
    query = sa.select(*columns).order_by(log.id.desc())
    if module is not None:
        query = query.where(log.module == module)
    if limit is not None:
        query = query.limit(limit)
    rows = connection.execute(query).mappings().all()
    return [LedgerEntry(**dict(row)) for row in reversed(rows)]
