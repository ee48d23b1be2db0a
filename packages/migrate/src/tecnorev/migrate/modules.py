"""The modules whose migrations the engine manages, discovered through an entry-point group.

Each entry point of the project's group (``Project.entry_point_group``) names a module
descriptor.  The engine reads these attributes of it and nothing else, so a project may use
:class:`Module` or any object of its own carrying the same names:

- ``name``: the module's Alembic branch label, equal to the entry point's name;
- ``package``: the import package that owns its code, models and migrations;
- ``depends_on``: names of the modules whose tables it references (default none);
- ``models``: the dotted module defining its tables (default ``<package>.models``);
- ``migrations``: its versions folder inside ``package`` (default ``migrations``).

Reading descriptors imports nothing else; models are imported on demand by ``load_models``.
"""

from __future__ import annotations

import graphlib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tecnorev.migrate.errors import DiscoveryError, unknown_module
from tecnorev.migrate.project import project

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.orm import Mapper


@dataclass(frozen=True)
class Module:
    """One module's migration branch: where its revisions and models live."""

    name: str
    package: str
    depends_on: tuple[str, ...] = ()
    models: str | None = None
    migrations: str = "migrations"
    description: str = ""
    distribution: str | None = field(default=None, compare=False)

    @property
    def models_module(self) -> str:
        return self.models or f"{self.package}.models"

    def migrations_path(self) -> Path:
        """The folder holding this module's Alembic branch, inside the installed package."""
        return Path(str(resources.files(self.package).joinpath(self.migrations)))

    def owns_module(self, dotted: str) -> bool:
        return dotted == self.package or dotted.startswith(self.package + ".")


def describe(found: Any, distribution: str | None = None, where: str = "") -> Module:
    """The engine's view of a descriptor: the attributes named in this module's docstring."""
    if isinstance(found, Module):
        return found
    try:
        name, package = found.name, found.package
    except AttributeError:
        raise DiscoveryError(
            f"{where or 'a descriptor'}: a {type(found).__name__} without the 'name' and "
            "'package' of a module descriptor"
        ) from None
    return Module(
        name=name,
        package=package,
        depends_on=tuple(getattr(found, "depends_on", ()) or ()),
        models=getattr(found, "models", None),
        migrations=getattr(found, "migrations", "migrations") or "migrations",
        description=getattr(found, "description", "") or "",
        distribution=distribution or getattr(found, "distribution", None),
    )


def _load(ep: EntryPoint, dist: str | None) -> Module:
    try:
        found = ep.load()
    except Exception as exc:
        name = dist or "an unknown distribution"
        raise DiscoveryError(
            f"module {ep.name!r} (from {name}) failed to import: {type(exc).__name__}: {exc}. "
            f"Reinstall it or remove it: pip uninstall {name}"
        ) from exc
    where = f"entry point {ep.name!r} of {dist or 'an unknown distribution'}"
    module = describe(found, dist, f"{where} points at {ep.value!r},")
    if module.name != ep.name:
        raise DiscoveryError(
            f"{where} describes a module named {module.name!r}; the entry point's name and "
            "the module's name must be the same"
        )
    return module


def _dependency_order(modules: Mapping[str, Module]) -> list[Module]:
    for module in modules.values():
        for dep in module.depends_on:
            if dep not in modules:
                raise DiscoveryError(
                    f"module {module.name!r} depends on {dep!r}, which is not installed: "
                    + project().install_hint.format(module=dep)
                )
    # Sorted input, then alphabetical among the ready: the order is the same on every machine.
    sorter = graphlib.TopologicalSorter({n: sorted(modules[n].depends_on) for n in sorted(modules)})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(reversed(exc.args[1]))
        raise DiscoveryError("module dependency cycle: " + " -> ".join(cycle)) from None
    ordered: list[Module] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(modules[n] for n in ready)
        sorter.done(*ready)
    return ordered


def all_mappers() -> Iterator[Mapper[Any]]:
    """Every mapped class's mapper, whatever declarative base or registry made it.

    SQLAlchemy has no public list of its registries; ``_all_registries`` is what its own
    ``clear_mappers()`` walks, and has been since 1.4."""
    from sqlalchemy.orm import mapperlib

    for registry in list(mapperlib._all_registries()):
        yield from registry.mappers


@dataclass(frozen=True)
class Registry:
    """The installed modules in dependency order (every module after what it depends on)."""

    modules: tuple[Module, ...]

    @classmethod
    def from_modules(cls, modules: Iterable[Module]) -> Registry:
        by_name: dict[str, Module] = {}
        for module in modules:
            if module.name in by_name:
                other = by_name[module.name]
                raise DiscoveryError(
                    f"two installed distributions both provide module {module.name!r}: "
                    f"{other.distribution} and {module.distribution}; uninstall one of them"
                )
            by_name[module.name] = module
        return cls(tuple(_dependency_order(by_name)))

    @classmethod
    def of(cls, registry_or_modules: Any) -> Registry:
        """This registry from another's ``modules`` (a project's own registry) or from
        descriptors, so a caller that picked a set of modules can hand it over."""
        if isinstance(registry_or_modules, Registry):
            return registry_or_modules
        modules = getattr(registry_or_modules, "modules", registry_or_modules)
        return cls.from_modules(describe(m) for m in modules)

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.modules)

    def __getitem__(self, name: str) -> Module:
        for module in self.modules:
            if module.name == name:
                return module
        raise unknown_module(name, self.names)

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.modules]

    def dependencies(self, name: str) -> set[str]:
        """Every module ``name`` depends on, directly or not."""
        found: set[str] = set()
        stack = list(self[name].depends_on)
        while stack:
            dep = stack.pop()
            if dep not in found:
                found.add(dep)
                stack.extend(self[dep].depends_on)
        return found

    def dependents(self, name: str) -> set[str]:
        """Every module that depends on ``name``, directly or not."""
        return {m.name for m in self.modules if name in self.dependencies(m.name)}

    def version_locations(self) -> list[Path]:
        return [m.migrations_path() for m in self.modules]

    @cached_property
    def module_by_folder(self) -> dict[Path, str]:
        """Resolved migrations folder -> module name (resolved once: looked up per revision)."""
        return {m.migrations_path().resolve(): m.name for m in self.modules}

    def load_models(self) -> list[sa.MetaData]:
        """Import every module's models (in dependency order); the metadata their tables are
        in, usually one shared by every module."""
        import sqlalchemy.exc

        for module in self.modules:
            try:
                importlib.import_module(module.models_module)
            except ModuleNotFoundError as exc:
                if exc.name == module.models_module and module.models is None:
                    continue  # a module of data migrations only, with no models of its own
                raise DiscoveryError(
                    f"models of module {module.name!r} ({module.models_module}) failed to "
                    f"import: {type(exc).__name__}: {exc}"
                ) from exc
            except sqlalchemy.exc.InvalidRequestError as exc:
                raise DiscoveryError(
                    f"models of module {module.name!r} ({module.models_module}) clash with a "
                    f"table already defined by another module: {exc}"
                ) from exc
            except Exception as exc:
                raise DiscoveryError(
                    f"models of module {module.name!r} ({module.models_module}) failed to "
                    f"import: {type(exc).__name__}: {exc}"
                ) from exc
        found: list[sa.MetaData] = []
        for mapper in all_mappers():
            if self.owner_of_python_module(mapper.class_.__module__) is None:
                continue
            for table in mapper.tables:
                metadata = getattr(table, "metadata", None)
                if metadata is not None and all(metadata is not m for m in found):
                    found.append(metadata)
        return found

    @cached_property
    def table_owners(self) -> dict[str, str]:
        """Table name -> owning module name, from the module each mapped class lives in."""
        self.load_models()
        owners: dict[str, str] = {}
        for mapper in all_mappers():
            owner = self.owner_of_python_module(mapper.class_.__module__)
            if owner is None:
                continue
            for table in mapper.tables:
                name = getattr(table, "name", None)
                if name is None:
                    continue
                previous = owners.setdefault(name, owner)
                if previous != owner:
                    raise DiscoveryError(
                        f"modules {previous!r} and {owner!r} both define table {name!r}"
                    )
        return owners

    def owner_of_python_module(self, dotted: str) -> str | None:
        for module in self.modules:
            if module.owns_module(dotted):
                return module.name
        return None

    def tables_of(self, name: str) -> set[str]:
        return {t for t, owner in self.table_owners.items() if owner == name}


def discover(only: Iterable[str] | None = None, group: str | None = None) -> Registry:
    """Every installed module of the project's entry-point group (``group`` to name another);
    ``only`` keeps a named subset (and fails if one of them needs a module left out)."""
    seen: set[tuple[str, str, str]] = set()
    modules: list[Module] = []
    for ep in entry_points(group=group or project().entry_point_group):
        dist_name = ep.dist.name if ep.dist else None  # reads METADATA: once per entry point
        key = (ep.name, ep.value, dist_name or "")
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        modules.append(_load(ep, dist_name))
    if only is not None:
        wanted = set(only)
        missing = wanted - {m.name for m in modules}
        if missing:
            raise DiscoveryError(f"not installed: {', '.join(sorted(missing))}")
        modules = [m for m in modules if m.name in wanted]
    registry = Registry.from_modules(modules)
    from tecnorev.migrate.compatibility import check

    check(registry)
    return registry


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    return discover()
