"""Discovery of installed domain modules through entry points, and what each one owns.

Reading the registry imports only the small descriptors; models are imported on demand by
``load_models`` so a command that only lists migrations stays fast.
"""

from __future__ import annotations

import graphlib
import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from tecnorev.core.errors import DiscoveryError, UnknownModule
from tecnorev.core.module import ENTRY_POINT_GROUP, Module, Permission

if TYPE_CHECKING:
    import sqlalchemy as sa

_CODE = re.compile(r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$")


def _load_entry_point(ep: EntryPoint, dist_name: str | None) -> Module:
    dist = dist_name or "an unknown distribution"
    try:
        module = ep.load()
    except Exception as exc:
        raise DiscoveryError(
            f"module {ep.name!r} (from {dist}) failed to import: {type(exc).__name__}: {exc}. "
            f"Reinstall it or remove it: pip uninstall {dist}"
        ) from exc
    if not isinstance(module, Module):
        raise DiscoveryError(
            f"entry point {ep.name!r} of {dist} points at {ep.value!r}, "
            f"which is a {type(module).__name__}, not a tecnorev.core.Module"
        )
    if module.name != ep.name:
        raise DiscoveryError(
            f"entry point {ep.name!r} of {dist} describes a module named {module.name!r}; "
            "the entry point name and Module.name must be the same"
        )
    return replace(module, distribution=dist_name)


def _topological_order(modules: Mapping[str, Module]) -> list[Module]:
    for module in modules.values():
        for dep in module.depends_on:
            if dep not in modules:
                raise DiscoveryError(
                    f"module {module.name!r} depends on {dep!r}, which is not installed: "
                    f"pip install tecnorev-{dep}"
                )
    # alphabetical among the modules ready at each step: the same order on every machine
    sorter = graphlib.TopologicalSorter({n: sorted(modules[n].depends_on) for n in sorted(modules)})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise DiscoveryError(f"module dependency cycle: {cycle}") from None
    ordered: list[Module] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(modules[n] for n in ready)
        sorter.done(*ready)
    return ordered


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
        registry = cls(tuple(_topological_order(by_name)))
        registry.permissions  # noqa: B018 - refuses two modules declaring one code, up front
        return registry

    @cached_property
    def permissions(self) -> dict[str, tuple[str, Permission]]:
        """Every permission code the installed modules declare -> (its module, its entry)."""
        found: dict[str, tuple[str, Permission]] = {}
        for module in self.modules:
            for permission in module.permissions:
                if not _CODE.match(permission.code):
                    raise DiscoveryError(
                        f"module {module.name!r} declares the permission code "
                        f"{permission.code!r}; codes are '<resource>:<action>' in lowercase"
                    )
                owner = found.get(permission.code)
                if owner is not None:
                    raise DiscoveryError(
                        f"modules {owner[0]!r} and {module.name!r} both declare the permission "
                        f"code {permission.code!r}"
                    )
                found[permission.code] = (module.name, permission)
        return found

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.modules)

    def __getitem__(self, name: str) -> Module:
        for module in self.modules:
            if module.name == name:
                return module
        from tecnorev.migrate.errors import did_you_mean

        installed = ", ".join(self.names) or "none"
        raise UnknownModule(
            f"no installed module named {name!r} (installed: {installed})."
            + did_you_mean(name, self.names)
        )

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

    def load_models(self) -> sa.MetaData:
        """Import every module's models (in dependency order) and return the shared metadata."""
        import sqlalchemy.exc

        from tecnorev.core.mixins import metadata

        for module in self.modules:
            try:
                importlib.import_module(module.models_module)
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
        return metadata

    @cached_property
    def table_owners(self) -> dict[str, str]:
        """Table name -> owning module name, from the module each mapped class lives in."""
        from sqlmodel import SQLModel

        self.load_models()
        owners: dict[str, str] = {}
        for mapper in SQLModel._sa_registry.mappers:
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


def discover(only: Iterable[str] | None = None) -> Registry:
    """Load every installed ``tecnorev.modules`` entry point; ``only`` keeps a named subset
    (and fails if one of them needs a module left out)."""
    seen: set[tuple[str, str, str]] = set()
    modules: list[Module] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist_name = ep.dist.name if ep.dist else None  # reads METADATA: once per entry point
        key = (ep.name, ep.value, dist_name or "")
        if key in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(key)
        modules.append(_load_entry_point(ep, dist_name))
    if only is not None:
        wanted = set(only)
        missing = wanted - {m.name for m in modules}
        if missing:
            raise DiscoveryError(f"not installed: {', '.join(sorted(missing))}")
        modules = [m for m in modules if m.name in wanted]
    return Registry.from_modules(modules)


@lru_cache(maxsize=1)
def get_registry() -> Registry:
    return discover()
