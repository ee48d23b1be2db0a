"""``tecnorev db verify``: the checks a CI run makes before a module's migrations ship.

* **heads**: one head per module, and every ``down_revision`` inside the module's own branch;
* **depends_on**: every ``depends_on`` points into a module the depending module declares, and
  the lowest version of that dependency its distribution accepts already ships the revision;
* **edited**: no migration applied to the configured database was edited afterwards;
* **models**: a scratch database migrated to every head matches each module's models, compared
  with the rules autogenerate uses;
* **reachable**: every table class of a module is imported by its models module (otherwise
  autogenerate never sees it: the guide's "models not detected").

Which release of a module first ships a revision comes from ``releases.toml`` in the module's
migrations folder: each released version with the head(s) of the branch in it, written at
release time (when the version is known, and without touching the revision files, whose
checksums the ledger keeps).  A revision no release lists ships in the version installed now.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from tecnorev.migrate import status
from tecnorev.migrate.backfill import backfill_job
from tecnorev.migrate.connect import bounded_engine
from tecnorev.migrate.errors import DatabaseUnavailable, MigrationError
from tecnorev.migrate.ledger import distribution_version, ledger_metadata
from tecnorev.migrate.modules import all_mappers
from tecnorev.migrate.project import project
from tecnorev.migrate.releases import RELEASES_FILE, read_releases
from tecnorev.migrate.replicas import replica_report

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import Script, ScriptDirectory

    from tecnorev.migrate.modules import Registry

# the engine's own tables: the version table, the ledger's, the replicas' and backfills'
_UPGRADE_FAILED = "migrating a scratch database to every head failed"
BOOKKEEPING_TABLES = frozenset(
    {"alembic_version", *ledger_metadata.tables, replica_report.name, backfill_job.name}
)


@dataclass(frozen=True)
class Problem:
    module: str | None
    message: str
    path: str | None = None
    line: int | None = None

    @property
    def location(self) -> str:
        if self.path is None:
            return ""
        return f"{self.path}:{self.line}" if self.line else self.path

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "message": self.message,
            "path": self.path,
            "line": self.line,
        }


@dataclass
class CheckResult:
    name: str
    title: str
    problems: list[Problem] = field(default_factory=list)
    skipped: str | None = None  # why the check could not run
    note: str | None = None

    @property
    def status(self) -> str:
        if self.problems:
            return "failed"
        return "skipped" if self.skipped else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "note": self.skipped or self.note,
            "problems": [p.to_json() for p in self.problems],
        }


@dataclass(frozen=True)
class VerifyReport:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return not any(c.problems for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class _Code:
    """The installed revisions, read once for every check."""

    scripts: Mapping[str, Script]
    owners: Mapping[str, str]
    registry: Registry
    # squashes: each replaced revision -> its squash, and each range's last one -> its squash
    replaced: Mapping[str, str] = field(default_factory=dict)
    tips: Mapping[str, str] = field(default_factory=dict)


def _line_of(path: str, pattern: str) -> int | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(pattern, text, re.M)
    return text.count("\n", 0, match.start()) + 1 if match else None


# -- heads ---------------------------------------------------------------------------------


def check_heads(code: _Code) -> CheckResult:
    result = CheckResult("heads", "one head per module, each branch inside its module")
    heads: dict[str, list[Script]] = {}
    for revision, script in sorted(code.scripts.items()):
        owner = code.owners.get(revision)
        if owner is None:
            continue
        if script.is_head:
            heads.setdefault(owner, []).append(script)
        for parent in script._versioned_down_revisions:
            theirs = code.owners.get(parent)
            if theirs is not None and theirs != owner:
                result.problems.append(
                    Problem(
                        owner,
                        f"{revision} continues module {theirs!r}'s branch (down_revision "
                        f"{parent}); a revision extends its own module's branch and names "
                        "another module's revision in depends_on instead",
                        script.path,
                        _line_of(script.path, r"^down_revision\b"),
                    )
                )
    for module, scripts in heads.items():
        if len(scripts) > 1:
            ids = [s.revision for s in scripts]
            listed = ", ".join(f"{s.revision} ({s.path})" for s in scripts)
            result.problems.append(
                Problem(
                    module,
                    f"{len(ids)} heads: {listed}. Two people extended the module at once; "
                    f"join them: {project().command} merge -m 'merge {module}' {' '.join(ids)}",
                )
            )
    return result


# -- releases ------------------------------------------------------------------------------


def check_releases(code: _Code) -> CheckResult:
    """Each module's record names revisions that exist, and the installed version, when it is
    recorded as released, ships exactly the branch as it is now: a revision added after a
    release needs a new version."""
    result = CheckResult("releases", "release records match the revisions")
    for module in code.registry.modules:
        path = module.migrations_path() / RELEASES_FILE
        try:
            recorded = read_releases(path)
        except MigrationError as exc:
            result.problems.append(Problem(module.name, str(exc), str(path)))
            continue
        for release in recorded:
            gone = [h for h in release.heads if h not in code.scripts and h not in code.replaced]
            if gone:
                result.problems.append(
                    Problem(
                        module.name,
                        f"release {release.version} records {', '.join(gone)}, which no "
                        "installed revision file is: restore it (a released revision file is "
                        "never deleted)",
                        str(path),
                    )
                )
        installed = distribution_version(module.distribution)
        current = sorted(
            r for r, s in code.scripts.items() if s.is_head and code.owners.get(r) == module.name
        )
        same = next((r for r in recorded if r.version == installed), None)
        # a squash stands for the last revision it replaces: the same schema, whichever ships
        if same is not None and sorted(code.tips.get(h, h) for h in same.heads) != current:
            result.problems.append(
                Problem(
                    module.name,
                    f"{module.distribution} {installed} is recorded as shipping "
                    f"{', '.join(same.heads)}, but the branch's head is now "
                    f"{', '.join(current) or 'none'}: a released version never changes; raise "
                    f"the version in pyproject.toml, and record it at release time with "
                    f"{project().command} release {module.name} <version>",
                    str(path),
                )
            )
    return result


# -- depends_on ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shipping:
    """The version of a distribution that first ships a revision, and how we know."""

    version: Any  # packaging.version.Version
    source: str
    problem: str | None = None


@cache
def _release_heads(path: Path) -> dict[str, list[str]]:
    return {r.version: list(r.heads) for r in read_releases(path)}


def _branch_ancestors(code: _Code, heads: list[str]) -> set[str]:
    found: set[str] = set()
    stack = list(heads)
    while stack:
        revision = stack.pop()
        if revision in found or revision not in code.scripts:
            continue
        found.add(revision)
        stack.extend(code.scripts[revision]._versioned_down_revisions)
    return found


def _first_shipping(code: _Code, module: str, revision: str) -> _Shipping:
    from packaging.version import InvalidVersion, Version

    descriptor = code.registry[module]
    path = descriptor.migrations_path() / RELEASES_FILE
    try:
        releases = _release_heads(path)
        ordered = sorted((Version(v), heads) for v, heads in releases.items())
    except (MigrationError, InvalidVersion) as exc:
        return _Shipping(None, str(path), str(exc))
    for version, heads in ordered:
        if revision in _branch_ancestors(code, [code.tips.get(h, h) for h in heads]):
            return _Shipping(version, f"as recorded in {path}")
    installed = distribution_version(descriptor.distribution)
    if installed is None:
        return _Shipping(None, "", f"the version of {descriptor.distribution} is unknown")
    try:
        current = Version(installed)
    except InvalidVersion:
        return _Shipping(None, "", f"{descriptor.distribution} {installed} is not a version")
    if any(version == current for version, _ in ordered):
        return _Shipping(
            current,
            "",
            f"{revision} is not in release {installed} of {descriptor.distribution} as "
            f"recorded in {path}, yet the distribution's version is still {installed}: "
            "raise its version for the release that will ship the revision",
        )
    return _Shipping(current, "the installed version; no release recorded ships it yet")


@cache
def _lower_bound(requirer: str, required: str) -> tuple[bool, Any, str]:
    """(declared, lowest accepted version or None, the specifier as written)."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    try:
        declared = requires(requirer) or []
    except PackageNotFoundError:
        declared = []
    for text in declared:
        requirement = Requirement(text)
        if canonicalize_name(requirement.name) != canonicalize_name(required):
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        bounds = [
            Version(spec.version.removesuffix(".*"))
            for spec in requirement.specifier
            if spec.operator in (">=", ">", "==", "~=")
        ]
        return True, max(bounds, default=None), str(requirement.specifier) or "(any version)"
    return False, None, ""


def _version_problem(code: _Code, script: Script, mine: str, dep: str, theirs: str) -> str | None:
    requirer = code.registry[mine].distribution or f"tecnorev-{mine}"
    required = code.registry[theirs].distribution or f"tecnorev-{theirs}"
    shipping = _first_shipping(code, theirs, dep)
    if shipping.problem and shipping.version is None:
        return shipping.problem
    if shipping.problem:
        return f"{script.revision} depends on {dep}, but {shipping.problem}"
    declared, lowest, spec = _lower_bound(requirer, required)
    fix = f"require '{required}>={shipping.version}' in the dependencies of {requirer}"
    if not declared:
        return (
            f"{script.revision} depends on {dep}, which {required} first ships in "
            f"{shipping.version} ({shipping.source}); {requirer} does not itself require "
            f"{required}, so nothing guarantees that version: {fix}"
        )
    if lowest is None or lowest < shipping.version:
        accepts = f"from {lowest}" if lowest is not None else "any version"
        return (
            f"{script.revision} depends on {dep}, which {required} first ships in "
            f"{shipping.version} ({shipping.source}); {requirer} accepts {required}{spec} "
            f"({accepts}), which may lack it: {fix}"
        )
    return None


def check_dependencies(code: _Code) -> CheckResult:
    result = CheckResult(
        "depends_on", "depends_on into declared dependencies, shipped by their lowest version"
    )
    try:
        import packaging.requirements  # noqa: F401 - the version half needs it
    except ImportError:
        result.skipped = "the 'packaging' distribution is not installed: pip install packaging"
    for revision, script in sorted(code.scripts.items()):
        mine = code.owners.get(revision)
        if mine is None:
            continue
        for dep in script._resolved_dependencies:
            theirs = code.owners.get(dep)
            if theirs is None or theirs == mine:
                continue
            message: str | None
            if theirs not in code.registry.dependencies(mine):
                message = (
                    f"{revision} depends on {dep} of module {theirs!r}, which {mine!r} does not "
                    f"declare as a dependency: add {theirs!r} to depends_on in the Module of "
                    f"{code.registry[mine].package} and to its distribution's dependencies, or "
                    "drop the reference"
                )
            elif result.skipped is None:
                message = _version_problem(code, script, mine, dep, theirs)
            else:
                message = None
            if message:
                line = _line_of(script.path, r"^depends_on\b")
                result.problems.append(Problem(mine, message, script.path, line))
    return result


# -- edited --------------------------------------------------------------------------------


def check_edited(code: _Code, scripts: ScriptDirectory, url: str) -> CheckResult:
    result = CheckResult("edited", "no applied migration edited since")
    shown = sa.make_url(url).render_as_string(hide_password=True)
    try:
        with status.open_database(url) as connection:
            if connection is None:
                result.skipped = f"no database at {shown} yet: nothing applied to compare"
                return result
            report = status.read_status(connection, scripts, code.registry)
    except DatabaseUnavailable as exc:
        result.skipped = f"skipped: {exc}"
        return result
    result.note = f"against {shown}"
    for row in report.modules:
        for edited in row.edited:
            change = "deleted" if edited.checksum_now is None else "edited"
            when = f" on {edited.applied_at:%Y-%m-%d %H:%M} UTC" if edited.applied_at else ""
            result.problems.append(
                Problem(
                    row.module,
                    f"{edited.revision} was {change} after it was applied to {shown}{when} "
                    f"(sha256 then {edited.checksum_applied[:12]}, now "
                    f"{(edited.checksum_now or 'none')[:12]}): restore the file and put the "
                    "change in a new revision, or, for a reviewed edit that changes nothing "
                    f"the database needs, {project().command} repair {edited.revision} "
                    "--reason '...'",
                    edited.path,
                )
            )
    return result


# -- models --------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """No 'Running upgrade' lines for the scratch database: the user did not ask for them."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _migration_frame(exc: BaseException, registry: Registry) -> tuple[str | None, int | None]:
    for folder in registry.version_locations():
        path, line = _frame_in(exc, str(folder))
        if path is not None:
            return path, line
    return None, None


def _table_of(diff: Any) -> str | None:
    if isinstance(diff, list):
        return _table_of(diff[0]) if diff else None
    kind, obj = diff[0], diff[1]
    if kind in ("add_table", "remove_table", "add_table_comment", "remove_table_comment"):
        return obj.name
    if kind in ("add_column", "remove_column") or kind.startswith("modify_"):
        return diff[2]
    return getattr(getattr(obj, "table", None), "name", None)


def _class_locations() -> dict[str, tuple[str | None, int | None]]:
    """Table name -> (file, line) of the class mapping it."""
    found: dict[str, tuple[str | None, int | None]] = {}
    for mapper in all_mappers():
        for table in mapper.tables:
            name = getattr(table, "name", None)
            if name:
                found.setdefault(name, _source_of(mapper.class_))
    return found


def _source_of(cls: type) -> tuple[str | None, int | None]:
    try:
        return inspect.getsourcefile(cls), inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return None, None


def check_models(config: Config, code: _Code, scratch_url: str) -> CheckResult:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tecnorev.migrate.autogen import describe_diff, make_include_object
    from tecnorev.migrate.cli import make_config

    registry = code.registry
    kind = sa.make_url(scratch_url).get_backend_name()
    result = CheckResult("models", "models match migrations, per module")
    result.note = f"compared on a scratch {'PostgreSQL' if kind == 'postgresql' else 'SQLite'} db"
    try:
        with _quiet():
            command.upgrade(
                make_config(ini=config.config_file_name, url=scratch_url, scratch=True), "heads"
            )
    except DatabaseUnavailable:
        raise  # nothing was compared: not a finding about the migrations
    except Exception as exc:
        path, line = _migration_frame(exc, registry)
        detail = str(getattr(exc, "orig", None) or exc).strip()
        result.problems.append(
            Problem(
                None,
                f"{_UPGRADE_FAILED}: {type(exc).__name__}: {detail}",
                path,
                line,
            )
        )
        return result
    metadata = registry.load_models()
    owners = registry.table_owners
    engine = bounded_engine(scratch_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection, _quiet():
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": make_include_object(owners, None, metadata),
                    "target_metadata": metadata,
                },
            )
            # alembic compares with a sequence of MetaData too (its AutogenContext takes one);
            # only compare_metadata's annotation says a single MetaData
            diffs = compare_metadata(context, metadata)  # type: ignore[arg-type]
            orphans = sorted(set(sa.inspect(connection).get_table_names()) - set(owners))
    finally:
        engine.dispose()
    result.problems += _orphan_tables(orphans, code)
    locations = _class_locations() if diffs else {}
    for diff in diffs:
        table = _table_of(diff)
        module = owners.get(table or "")
        path, line = locations.get(table or "", (None, None))
        result.problems.append(
            Problem(
                module,
                f"models and migrations differ: {describe_diff(diff)}; write the revision: "
                f"{project().command} generate {module or '<module>'} -m '...'",
                path,
                line,
            )
        )
    return result


def check_squashes(config: Config, scripts: ScriptDirectory, squashed_url: str) -> CheckResult:
    """Each squash whose originals are still shipped builds what they build: a second scratch
    database migrated through the originals holds the same schema and rows as ``squashed_url``
    (already migrated to every head, squashes run)."""
    from alembic import command

    from tecnorev.migrate import squash
    from tecnorev.migrate.cli import make_config
    from tecnorev.migrate.environment import ORIGINALS_ATTRIBUTE
    from tecnorev.migrate.scratch import differences, scratch_database, snapshot

    result = CheckResult("squashes", "each squash builds what its originals build")
    shipped = [s for s in squash.squashes(scripts) if s.shipped == set(s.originals)]
    if not shipped:
        result.note = "no squash ships its originals beside it"
        return result
    names = ", ".join(s.revision for s in shipped)
    result.note = f"{names} against their originals, on a second scratch database"
    with scratch_database(squashed_url) as originals_url:
        config = make_config(ini=config.config_file_name, url=originals_url, scratch=True)
        config.attributes[ORIGINALS_ATTRIBUTE] = True
        try:
            with _quiet():
                command.upgrade(config, "heads")
        except Exception as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip()
            message = f"migrating through the originals of {names} failed: {detail}"
            result.problems.append(Problem(None, message))
            return result
        found = differences(
            snapshot(squashed_url, BOOKKEEPING_TABLES), snapshot(originals_url, BOOKKEEPING_TABLES)
        )
    for line in found:
        line = line.replace("the first", "the squashed").replace("the second", "the originals")
        message = f"{names} and the revisions they replace build different databases: {line}"
        result.problems.append(Problem(None, message))
    return result


def _orphan_tables(tables: list[str], code: _Code) -> list[Problem]:
    """Tables the migrations create that no model defines.  Autogenerate cannot see them (it
    must not drop the tables of modules that are not installed), so they are found here: the
    scratch database holds only what the installed modules' migrations create."""
    problems = []
    for table in tables:
        if table in BOOKKEEPING_TABLES or table.startswith("sqlite_"):
            continue
        module, path, line = _creator_of(table, code)
        problems.append(
            Problem(
                module,
                f"table {table!r} is created by the migrations but no model defines it: restore "
                f"its class, or drop it in a new revision ({project().command} generate "
                f"{module or '<module>'} -m '...' --empty; autogenerate never drops a table "
                "it does not own)",
                path,
                line,
            )
        )
    return problems


def _creator_of(table: str, code: _Code) -> tuple[str | None, str | None, int | None]:
    """(module, file, line) of the revision whose source creates ``table``."""
    pattern = rf"create_table\(\s*['\"]{re.escape(table)}['\"]"
    for revision, script in sorted(code.scripts.items()):
        module = code.owners.get(revision)
        line = _line_of(script.path, pattern) if module else None
        if line is not None:
            return module, script.path, line
    return None, None, None


# -- reachable -----------------------------------------------------------------------------


def _submodules(package: str, skip: tuple[str, ...]) -> Iterator[tuple[str, Exception | None]]:
    """Every submodule of ``package`` imported, with the error when one fails to import."""
    failures: list[tuple[str, Exception]] = []

    def on_error(name: str) -> None:
        import sys

        error = sys.exc_info()[1]
        failures.append((name, error if isinstance(error, Exception) else RuntimeError(name)))

    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=package + ".", onerror=on_error):
        name = info.name
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            yield name, exc
            continue
        yield name, None
    yield from failures


def check_reachable(registry: Registry) -> CheckResult:
    """Import every module's whole package; a table class that appears only then is one its
    models module does not import.  Run last: the extra imports add tables to the metadata."""
    result = CheckResult("reachable", "every table class imported by its models module")
    registry.load_models()
    seen = set(all_mappers())
    for module in registry.modules:
        skip = (f"{module.package}.{module.migrations}", f"{module.package}.tests")
        folder = str(Path(importlib.import_module(module.package).__file__ or "").parent)
        for name, error in _submodules(module.package, skip):
            if error is not None:
                path, line = _frame_in(error, folder)
                result.problems.append(
                    Problem(
                        module.name,
                        f"{name} cannot be imported ({type(error).__name__}: {error}), so its "
                        "table classes cannot be checked",
                        path,
                        line,
                    )
                )
    for mapper in sorted(set(all_mappers()) - seen, key=lambda m: m.class_.__qualname__):
        cls = mapper.class_
        owner = registry.owner_of_python_module(cls.__module__)
        if owner is None:
            continue
        models = registry[owner].models_module
        table = getattr(mapper.local_table, "name", "?")
        path, line = _source_of(cls)
        result.problems.append(
            Problem(
                owner,
                f"table class {cls.__name__} (table {table!r}) in {cls.__module__} is not "
                f"imported by {models}, so autogenerate and verify never see it: move it to "
                f"{models} or import it there",
                path,
                line,
            )
        )
    return result


def _frame_in(exc: BaseException, folder: str) -> tuple[str | None, int | None]:
    """The innermost place under ``folder`` where ``exc`` was raised."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return exc.filename, exc.lineno
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(folder):
            found = (frame.filename, frame.lineno)
    return found


# -- all together --------------------------------------------------------------------------


def verify(
    config: Config,
    scripts: ScriptDirectory,
    registry: Registry,
    *,
    database_url: str,
    scratch: Callable[[], Any],
) -> VerifyReport:
    """Run every check; ``scratch()`` is a context manager yielding an empty database URL."""
    try:
        code = _read_code(scripts, registry)
    except MigrationError as exc:
        broken = CheckResult("revisions", "the revision graph loads")
        broken.problems.append(Problem(None, str(exc)))
        return VerifyReport((broken,))
    # The scratch database first: on a server that does not answer (--postgres) the run ends
    # after one wait for it, not after the edited check has waited for it too.
    with scratch() as url:
        checks = [
            check_heads(code),
            check_releases(code),
            check_dependencies(code),
            check_edited(code, scripts, database_url),
            check_models(config, code, url),
        ]
        if not any(p.message.startswith(_UPGRADE_FAILED) for p in checks[-1].problems):
            checks.append(check_squashes(config, scripts, url))
    checks.append(check_reachable(registry))
    return VerifyReport(tuple(checks))


def _read_code(scripts: ScriptDirectory, registry: Registry) -> _Code:
    from tecnorev.migrate.squash import replaces

    found = status.all_scripts(scripts)
    squashes = [s for s in found.values() if replaces(s)]
    return _Code(
        found,
        status.owners_of(found, registry),
        registry,
        replaced={r: s.revision for s in squashes for r in replaces(s)},
        tips={replaces(s)[-1]: s.revision for s in squashes},
    )


__all__ = [
    "RELEASES_FILE",
    "CheckResult",
    "Problem",
    "VerifyReport",
    "check_dependencies",
    "check_edited",
    "check_heads",
    "check_models",
    "check_reachable",
    "check_releases",
    "check_squashes",
    "verify",
]
