"""The service is what is installed: a subset of modules gives a subset of routes, one tag
per module, and two modules claiming one endpoint are refused."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.errors import DiscoveryError
from tecnorev.core.module import Module
from tecnorev.core.registry import Registry, discover, get_registry
from tecnorev.testing.core import migrate

SERVICE_PATHS = {"/health", "/ready"}


def operations(openapi: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(method, path) -> the operation's tags."""
    return {
        (method, path): operation.get("tags", [])
        for path, item in openapi["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.modules("auth", "catalog")
def test_a_subset_of_modules_serves_only_their_routes_and_is_ready(database_url):
    migrate(database_url, "auth@head")
    migrate(database_url, "catalog@head")
    subset = discover(only=["auth", "catalog"])

    with TestClient(create_app(database_url=database_url, registry=subset)) as client:
        openapi = client.get("/openapi.json").json()
        ready = client.get("/ready")
        health = client.get("/health")
    with TestClient(create_app(database_url=database_url)) as client:
        everything = client.get("/openapi.json").json()

    assert [t["name"] for t in openapi["tags"]] == ["service", "auth", "catalog"]
    served = operations(openapi)
    assert all(len(tags) == 1 for tags in served.values()), served
    assert {path for (_, path), tags in served.items() if tags == ["service"]} == SERVICE_PATHS
    # Exactly what auth and catalog contribute to the full service, nothing of the others.
    assert served == {
        key: tags
        for key, tags in operations(everything).items()
        if tags[0] in {"service", "auth", "catalog"}
    }
    for (_, path), tags in served.items():
        assert path in SERVICE_PATHS or path.startswith("/api/v1/"), path
        if path.startswith("/api/v1/catalog/"):
            assert tags == ["catalog"]

    assert ready.status_code == 200, ready.text
    assert ready.json()["modules"] == {"auth": "up to date", "catalog": "up to date"}
    assert health.json()["modules"] == ["auth", "catalog"]


def test_the_full_service_has_one_tag_per_installed_module(database_url):
    with TestClient(create_app(database_url=database_url)) as client:
        openapi = client.get("/openapi.json").json()
    # core brings tables and no endpoints
    with_routes = [name for name in get_registry().names if name != "core"]
    assert [t["name"] for t in openapi["tags"]] == ["service", *with_routes]
    installed = set(get_registry().names)
    for (method, path), tags in operations(openapi).items():
        assert len(tags) == 1, (method, path, tags)
        if path not in SERVICE_PATHS:
            assert path.startswith("/api/v1/") and tags[0] in installed, (method, path, tags)


ROUTES = """
from fastapi import APIRouter

router = APIRouter()


@router.get("/shared/{{item_id}}")
def read_item(item_id: int) -> dict:
    return {{"owner": "{owner}"}}


@router.post("/{owner}/items")
def create_item() -> dict:
    return {{}}
"""


@pytest.fixture
def two_packages(tmp_path, monkeypatch) -> Registry:
    """Two installed-looking modules (routes and an empty models module each) that both
    define ``GET /api/v1/shared/{item_id}``."""
    for owner in ("alpha", "beta"):
        package = tmp_path / f"clash_{owner}"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "models.py").write_text("")
        (package / "routes.py").write_text(textwrap.dedent(ROUTES.format(owner=owner)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return Registry.from_modules(
        [
            Module(name="alpha", package="clash_alpha"),
            Module(name="beta", package="clash_beta", depends_on=("alpha",)),
        ]
    )


def test_two_modules_claiming_the_same_endpoint_are_refused_naming_both(two_packages, tmp_path):
    with pytest.raises(DiscoveryError) as refused:
        create_app(database_url=f"sqlite:///{tmp_path / 'x.db'}", registry=two_packages)
    message = str(refused.value)
    assert "'alpha'" in message and "'beta'" in message
    assert "GET /api/v1/shared/{item_id}" in message
