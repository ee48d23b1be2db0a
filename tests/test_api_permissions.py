"""The permission matrix, read off the composed app's route table (so a new route is covered
the day it is added): every route that changes data refuses an anonymous caller with 401 and
a caller holding every permission except the one it requires with 403."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.auth.deps import current_user, required_permission
from tecnorev.core.registry import get_registry
from tecnorev.core.web import API_PREFIX
from tecnorev.core.web.composition import module_routers
from tecnorev.testing.auth import all_permissions_but, user_header
from tecnorev.testing.core import migrate

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
# Changing data without a permission code: logging in and refreshing (the caller has no
# token yet), and a user's own session and password (any signed-in user may).
PUBLIC = {("POST", "/api/v1/auth/token"), ("POST", "/api/v1/auth/refresh")}
SIGNED_IN = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/password")}


def _calls(dependant) -> list:
    found = []
    for sub in dependant.dependencies:
        found.append(sub.call)
        found.extend(_calls(sub))
    return found


def write_routes() -> list[tuple[str, str, str | None, bool]]:
    """(method, path, permission required, authentication required) per data-changing route
    of every installed module."""
    rows = []
    routes = [r for _, router in module_routers(get_registry()) for r in router.routes]
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue  # (a redirect of a former path leads to a guarded route)
        calls = _calls(route.dependant)
        permissions = {p for p in map(required_permission, calls) if p}
        assert len(permissions) <= 1, f"{route.path} requires several permissions: {permissions}"
        for method in sorted(route.methods & WRITES):
            rows.append(
                (
                    method,
                    API_PREFIX + route.path,
                    next(iter(permissions), None),
                    current_user in calls,
                )
            )
    return rows


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def client(database_url):
    migrate(database_url)
    app = create_app(database_url=database_url)
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


def test_every_write_route_is_guarded(client):
    routes = write_routes()
    assert len(routes) > 10, "the composed app should expose the modules' write routes"
    unguarded = [
        (method, path)
        for method, path, permission, _ in routes
        if permission is None and (method, path) not in PUBLIC | SIGNED_IN
    ]
    assert not unguarded, f"data-changing routes without a permission: {unguarded}"
    for method, path, _, authenticated in routes:
        if (method, path) in SIGNED_IN:
            assert authenticated, f"{method} {path} must require a signed-in user"


def test_anonymous_callers_get_401(client):
    for method, path, _, _ in write_routes():
        if (method, path) in PUBLIC:
            continue
        response = client.request(method, _concrete(path), json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_authenticated", (method, path)
        assert response.headers["www-authenticate"] == "Bearer"


def test_callers_missing_only_the_required_permission_get_403(client):
    engine = client.app.state.engine
    headers: dict[str, dict[str, str]] = {}
    checked = 0
    for method, path, permission, _ in write_routes():
        if permission is None:
            continue
        if permission not in headers:
            headers[permission] = user_header(
                engine,
                f"all-but-{permission.replace(':', '-')}@example.com",
                permissions=all_permissions_but(permission),
            )
        response = client.request(method, _concrete(path), json={}, headers=headers[permission])
        assert response.status_code == 403, (method, path, permission, response.text)
        body = response.json()["error"]
        assert body["code"] == "permission_denied"
        assert permission in body["message"]
        checked += 1
    assert checked >= 10
