"""The installed versions of the project's distributions, for ``--version``."""

from __future__ import annotations

from importlib.metadata import distributions
from typing import Any

import typer


def installed_versions(prefix: str = "tecnorev") -> list[tuple[str, str]]:
    """(name, version) of each installed distribution whose name starts with ``prefix``."""
    found = {
        dist.metadata["Name"]: dist.version
        for dist in distributions()
        if (dist.metadata["Name"] or "").lower().startswith(prefix)
    }
    return sorted(found.items())


def print_versions() -> None:
    found = installed_versions()
    width = max((len(name) for name, _ in found), default=0)
    for name, version in found:
        typer.echo(f"{name:<{width}}  {version}")


def show_versions(ctx: Any, _param: Any, value: bool) -> None:
    """An eager ``--version`` option's callback: print the versions, then stop."""
    if not value or ctx.resilient_parsing:
        return
    print_versions()
    ctx.exit(0)
