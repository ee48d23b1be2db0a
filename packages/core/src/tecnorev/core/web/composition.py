"""Find each installed module's router and background work: what ``pip install`` adds to the
API."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import Protocol

import sqlalchemy as sa
from fastapi import APIRouter

from tecnorev.core.errors import DiscoveryError
from tecnorev.core.module import Module
from tecnorev.core.registry import Registry


def load_router(module: Module) -> APIRouter | None:
    """The module's router; ``None`` for a module that ships no routes module at the default
    place (a module with tables and no endpoints is allowed)."""
    dotted, _, attribute = module.router_path.partition(":")
    try:
        python_module = importlib.import_module(dotted)
    except ModuleNotFoundError as exc:
        if module.router is None and exc.name == dotted:
            return None
        raise DiscoveryError(
            f"routes of module {module.name!r} ({dotted}) failed to import: {exc}"
        ) from exc
    except Exception as exc:
        raise DiscoveryError(
            f"routes of module {module.name!r} ({dotted}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    router = getattr(python_module, attribute or "router", None)
    if not isinstance(router, APIRouter):
        raise DiscoveryError(
            f"module {module.name!r} names {module.router_path!r} as its router, "
            "which is not a fastapi.APIRouter"
        )
    return router


def module_routers(registry: Registry) -> Iterator[tuple[str, APIRouter]]:
    """``(module name, router)`` in dependency order, for every module that has one."""
    for module in registry.modules:
        router = load_router(module)
        if router is not None:
            yield module.name, router


BACKGROUND_ENTRY_POINT_GROUP = "tecnorev.background"


class Background(Protocol):
    """Work a module runs beside each API worker: started when the worker starts serving,
    stopped when it ends; neither may raise for a database that is down (the work waits for
    it, the worker serves without it)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def module_background(registry: Registry, engines: Sequence[sa.Engine]) -> list[Background]:
    """The background work of the installed modules for a worker serving on ``engines`` (the
    primary's writing engine first, then its reading one), in dependency order.  A module
    offers it with a ``tecnorev.background`` entry point named after it: a function of
    ``engines`` returning the work, or ``None`` when there is none to run here (a backend
    it does not serve, say)."""
    found: list[Background] = []
    for module in registry.modules:
        for ep in entry_points(group=BACKGROUND_ENTRY_POINT_GROUP, name=module.name):
            try:
                factory = ep.load()
            except Exception as exc:
                raise DiscoveryError(
                    f"background work {ep.value!r} of module {module.name!r} failed to load: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            work = factory(tuple(engines))
            if work is not None:
                found.append(work)
    return found
