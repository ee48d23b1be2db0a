"""Find each installed module's router: what ``pip install`` adds to the API."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

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
