"""Discovery: any descriptor with the documented attributes, in dependency order, refused with
a message when the set is inconsistent."""

from dataclasses import dataclass
from importlib.metadata import EntryPoint

import pytest

from tecnorev.migrate.errors import DiscoveryError
from tecnorev.migrate.modules import Module, Registry, _load, discover


def mod(name: str, *deps: str) -> Module:
    return Module(name=name, package=f"shop.{name}", depends_on=deps)


@dataclass(frozen=True)
class ForeignDescriptor:  # a project's own descriptor, with more than the engine reads
    name: str
    package: str
    depends_on: tuple[str, ...] = ()
    router: str = "shop.routes:router"


def test_modules_come_after_what_they_depend_on_and_ties_are_alphabetical():
    registry = Registry.from_modules(
        [mod("sales", "stock"), mod("users"), mod("stock", "items"), mod("items", "users"),
         mod("audit")]
    )  # fmt: skip
    assert registry.names == ["audit", "users", "items", "stock", "sales"]
    assert registry.dependencies("sales") == {"stock", "items", "users"}
    assert registry.dependents("items") == {"stock", "sales"}


def test_a_missing_dependency_and_a_cycle_are_named():
    with pytest.raises(
        DiscoveryError,
        match=r"'sales' depends on 'stock', which is not installed: pip install tecnorev-stock",
    ):
        Registry.from_modules([mod("sales", "stock")])
    with pytest.raises(DiscoveryError, match=r"cycle: a -> b -> a"):
        Registry.from_modules([mod("a", "b"), mod("b", "a")])


def test_two_distributions_providing_one_module_are_refused():
    first = Module(name="items", package="shop.items", distribution="shop-items")
    second = Module(name="items", package="acme.items", distribution="acme-items")
    with pytest.raises(DiscoveryError, match="shop-items and acme-items"):
        Registry.from_modules([first, second])


def test_a_registry_is_made_from_a_project_s_own_descriptors():
    registry = Registry.of([ForeignDescriptor("orders", "shop.orders", ("items",)),
                            ForeignDescriptor("items", "shop.items")])  # fmt: skip
    assert registry.names == ["items", "orders"]
    assert registry["orders"].models_module == "shop.orders.models"
    assert registry["orders"].migrations == "migrations"


def test_an_entry_point_that_fails_to_import_or_is_no_descriptor_is_named():
    ghost = EntryPoint(name="ghost", value="shop_absent_module:module", group="shop.modules")
    with pytest.raises(DiscoveryError, match=r"module 'ghost' .* failed to import"):
        _load(ghost, None)
    text = EntryPoint(name="text", value="tecnorev.migrate.project:SECTION", group="shop.modules")
    with pytest.raises(DiscoveryError, match=r"a str without the 'name' and 'package'"):
        _load(text, None)


def test_an_entry_point_named_unlike_its_module_is_refused(tmp_path, monkeypatch):
    (tmp_path / "shop_descriptor.py").write_text(
        "from tecnorev.migrate import Module\nmodule = Module(name='items', package='shop')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="other", value="shop_descriptor:module", group="shop.modules")
    with pytest.raises(DiscoveryError, match=r"describes a module named 'items'"):
        _load(ep, "shop-items")


def test_models_that_fail_to_import_are_named():
    broken = Module(name="broken", package="tecnorev.migrate", models="tecnorev.migrate.absent")
    with pytest.raises(DiscoveryError, match=r"models of module 'broken' .* failed to import"):
        Registry.from_modules([broken]).load_models()


def test_only_keeps_a_subset_and_checks_it():
    with pytest.raises(DiscoveryError, match="not installed: nothing_here"):
        discover(only=["nothing_here"], group="shop.modules.none")
