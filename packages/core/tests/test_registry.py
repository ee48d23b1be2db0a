from importlib.metadata import EntryPoint

import pytest

from tecnorev.core.errors import DiscoveryError
from tecnorev.core.module import ENTRY_POINT_GROUP, Module, Permission
from tecnorev.core.registry import Registry, _load_entry_point, discover


def mod(name: str, *deps: str) -> Module:
    return Module(name=name, package=f"tecnorev.{name}", depends_on=deps)


def test_modules_come_after_what_they_depend_on():
    registry = Registry.from_modules(
        [
            mod("sales", "inventory"),
            mod("auth"),
            mod("inventory", "catalog"),
            mod("catalog", "auth"),
        ]
    )
    assert registry.names == ["auth", "catalog", "inventory", "sales"]
    assert registry.dependencies("sales") == {"inventory", "catalog", "auth"}
    assert registry.dependents("catalog") == {"inventory", "sales"}


def test_missing_dependency_names_the_distribution_to_install():
    with pytest.raises(
        DiscoveryError, match=r"depends on 'inventory'.*pip install tecnorev-inventory"
    ):
        Registry.from_modules([mod("sales", "inventory")])


def test_dependency_cycle_is_shown():
    with pytest.raises(DiscoveryError, match=r"cycle: a -> b -> a"):
        Registry.from_modules([mod("a", "b"), mod("b", "a")])


def test_two_distributions_providing_one_module_are_refused():
    first = Module(name="catalog", package="tecnorev.catalog", distribution="tecnorev-catalog")
    second = Module(name="catalog", package="acme.catalog", distribution="acme-catalog")
    with pytest.raises(DiscoveryError, match="tecnorev-catalog and acme-catalog"):
        Registry.from_modules([first, second])


def test_unknown_module_lists_what_is_installed():
    with pytest.raises(
        DiscoveryError, match=r"no installed module named 'nope' \(installed: auth\)"
    ):
        Registry.from_modules([mod("auth")])["nope"]


def test_entry_point_that_fails_to_import_is_named():
    ep = EntryPoint(
        name="ghost", value="tecnorev.ghost_module_absent:module", group=ENTRY_POINT_GROUP
    )
    with pytest.raises(
        DiscoveryError, match=r"module 'ghost' .* failed to import: ModuleNotFoundError"
    ):
        _load_entry_point(ep, None)


def test_entry_point_must_describe_a_module():
    ep = EntryPoint(
        name="settings",
        value="tecnorev.core.settings:DEFAULT_DATABASE_URL",
        group=ENTRY_POINT_GROUP,
    )
    with pytest.raises(DiscoveryError, match=r"is a str, not a tecnorev\.core\.Module"):
        _load_entry_point(ep, None)


def test_models_that_fail_to_import_are_named():
    broken = Module(name="broken", package="tecnorev.core", models="tecnorev.core.no_such_models")
    with pytest.raises(DiscoveryError, match=r"models of module 'broken' .* failed to import"):
        Registry.from_modules([broken]).load_models()


def test_discovery_reads_installed_entry_points_without_importing_models():
    import sys

    registry = discover()
    for module in registry.modules:
        assert module.distribution
        assert module.migrations_path().is_dir()
        assert module.models_module not in sys.modules or module.models_module in sys.modules


def test_only_keeps_a_subset_and_checks_it():
    with pytest.raises(DiscoveryError, match="not installed: nothing_here"):
        discover(only=["nothing_here"])


def test_a_permission_code_has_one_owner_and_a_plain_shape():
    first = Module(name="a", package="x.a", permissions=(Permission("things:read", "read"),))
    second = Module(name="b", package="x.b", permissions=(Permission("things:read", "also"),))
    assert Registry.from_modules([first]).permissions["things:read"][0] == "a"
    with pytest.raises(DiscoveryError, match="'a' and 'b' both declare the permission code"):
        Registry.from_modules([first, second])
    odd = Module(name="c", package="x.c", permissions=(Permission("Things Read", "?"),))
    with pytest.raises(DiscoveryError, match="codes are '<resource>:<action>'"):
        Registry.from_modules([odd])


def test_an_app_refuses_a_route_demanding_a_code_no_module_declares():
    from fastapi import APIRouter, Depends

    from tecnorev.core.web import make_app

    def demands() -> None:
        pass

    demands.permission = "things:write"  # as auth's require_permission marks its dependency
    router = APIRouter()

    @router.post("/things", dependencies=[Depends(demands)])
    def write_thing() -> None:
        pass

    owner = Module(
        name="things", package="x.things", permissions=(Permission("things:write", "w"),)
    )
    make_app([("things", router)], registry=Registry.from_modules([owner]))
    with pytest.raises(DiscoveryError, match=r"demands the permission code 'things:write'"):
        make_app([("things", router)], registry=Registry.from_modules([mod("other")]))
