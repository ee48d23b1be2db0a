"""A module's background work, found through its ``tecnorev.background`` entry point
(``tecnorev.core.web.composition.module_background``): built for the worker's engines in
dependency order, skipped where it has nothing to run, and a clear error when it cannot load."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from tecnorev.core.errors import DiscoveryError
from tecnorev.core.module import Module
from tecnorev.core.registry import Registry
from tecnorev.core.web.composition import module_background


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on ``sys.path`` where a test installs distributions (metadata and code)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def distribution(where: Path, name: str, entry_points: dict[str, str], code: str) -> None:
    info = where / f"{name}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{module} = {target}\n" for module, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[tecnorev.background]\n{lines}")
    (where / f"{name}.py").write_text(textwrap.dedent(code))


def test_each_modules_work_is_built_for_the_engines_in_dependency_order(installed):
    distribution(
        installed,
        "bg_modules",
        {"shop": "bg_modules:shop", "stock": "bg_modules:stock", "idle": "bg_modules:idle"},
        """
        class Work:
            def __init__(self, name, engines):
                self.name, self.engines = name, engines
            def start(self): pass
            def stop(self): pass

        def shop(engines): return Work("shop", engines)
        def stock(engines): return Work("stock", engines)
        def idle(engines): return None  # nothing to run on this backend
        """,
    )
    registry = Registry.from_modules(
        [
            Module(name="shop", package="bg_modules", depends_on=("stock",)),
            Module(name="stock", package="bg_modules"),
            Module(name="idle", package="bg_modules"),
            Module(name="plain", package="bg_modules"),  # no entry point: no work
        ]
    )
    engine = sa.create_engine("sqlite://")
    found = module_background(registry, [engine])
    assert [(work.name, work.engines) for work in found] == [  # type: ignore[attr-defined]
        ("stock", (engine,)),
        ("shop", (engine,)),
    ]
    # a registry without those modules runs none of their work
    assert module_background(Registry.from_modules([]), [engine]) == []


def test_work_that_cannot_load_names_its_module(installed):
    distribution(installed, "bg_broken", {"shop": "bg_broken_gone:work"}, "")
    registry = Registry.from_modules([Module(name="shop", package="bg_broken")])
    with pytest.raises(
        DiscoveryError,
        match=r"background work 'bg_broken_gone:work' of module "
        r"'shop' failed to load: ModuleNotFoundError",
    ):
        module_background(registry, [sa.create_engine("sqlite://")])
