"""``tecnorev demo load``: each installed module adds its own demo data.

A module names a loader in its descriptor (``Module(demo="pkg.demo:load")``).  Loaders run in
dependency order, in one transaction, and share a ``DemoContext`` so a later module finds what
an earlier one made (sales places orders for catalog's products at inventory's branches).
Every loader is idempotent: it looks up what it would create and adds only what is missing,
so a second run changes nothing.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tecnorev.core.errors import DiscoveryError, MigrationError

if TYPE_CHECKING:
    from sqlmodel import Session

    from tecnorev.core.registry import Registry


@dataclass
class DemoContext:
    """What loaders share: a seeded random generator (the data set is the same on every
    machine) and named values earlier loaders left for later ones."""

    random: random.Random = field(default_factory=lambda: random.Random(20261124))
    values: dict[str, Any] = field(default_factory=dict)


Loader = Callable[["Session", DemoContext], str]


def _loader(target: str, module: str) -> Loader:
    dotted, _, attribute = target.partition(":")
    try:
        return getattr(importlib.import_module(dotted), attribute or "load")
    except (ImportError, AttributeError) as exc:
        raise DiscoveryError(f"demo loader {target!r} of module {module!r}: {exc}") from exc


def load_demo(engine: Any = None, registry: Registry | None = None) -> Iterator[tuple[str, str]]:
    """Run every installed module's loader; yields ``(module, summary)`` as each finishes.
    Nothing is stored unless every loader succeeds."""
    import sqlalchemy as sa

    from tecnorev.core.db import check_connection, get_engine, session_scope
    from tecnorev.core.registry import get_registry

    registry = registry or get_registry()
    engine = engine or get_engine()
    _refuse_missing_sqlite_file(engine.url)
    check_connection(engine)  # on SQLite, connecting would create an empty file
    registry.load_models()
    # The tables are there, or nothing can load; a later revision still pending shows as the
    # loader's database error, and the transaction keeps nothing.
    present = set(sa.inspect(engine).get_table_names())
    late = [m.name for m in registry.modules if registry.tables_of(m.name) - present]
    if late:
        raise MigrationError(
            f"the database lacks migrations of {', '.join(late)}; "
            "run 'tecnorev db upgrade heads' first"
        )
    context = DemoContext()
    done: list[tuple[str, str]] = []
    with session_scope(engine, registry=registry) as session:
        for module in registry.modules:
            if module.demo:
                summary = _loader(module.demo, module.name)(session, context)
                session.flush()
                done.append((module.name, summary))
    yield from done


def _refuse_missing_sqlite_file(url: Any) -> None:
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if not Path(database).exists():
        raise MigrationError(
            f"there is no database at {database}: create it with 'tecnorev db upgrade heads' first"
        )
