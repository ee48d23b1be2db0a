"""Every operation documents its error answers: per status, the ``error.code`` values it may
return, in the answer's description and as a list (``x-error-codes``), the body being the one
error schema (``ErrorResponse``).  Not an enum in the schema: a client generated from it would
then fail on a code a later release adds, where it should fall back to the status.

Where the codes come from:

* the platform's own, by what the route does: any request may meet an overloaded server or an
  unavailable database (503) or a fault (500); a request with parameters or a body may be
  invalid (422); a write may conflict with stored data or another request (409);
* its dependencies: a dependency function carrying ``error_codes`` (``{status: codes}``), as
  auth's ``current_user`` and ``require_permission`` do, and the listings (``invalid_cursor``);
* its module: a write may answer with any ``DomainError`` of the module owning the route and
  of the modules it depends on (a sale can meet ``insufficient_stock``); a read of one
  resource (a path with an id) with the module's "not found" codes.  Per module, not per
  route: a route may list a code it never returns, never the reverse.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from tecnorev.core.errors import DomainError

if TYPE_CHECKING:
    from tecnorev.core.registry import Registry

Codes = dict[int, set[str]]

ALWAYS: Codes = {
    500: {"internal_error"},
    503: {"overloaded", "database_unavailable", "database_timeout", "database_busy"},
}
WITH_INPUT: Codes = {422: {"validation_error"}}
WITH_BODY: Codes = {400: {"bad_request"}, 413: {"payload_too_large"}}
WRITES: Codes = {
    409: {"conflict", "resource_busy", "concurrent_update"},
    422: {"constraint_violation", "invalid_value"},
}


def _subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def module_codes(modules: Iterable[str]) -> Codes:
    """The codes the ``DomainError`` classes of ``modules`` (their packages) answer with."""
    prefixes = tuple(f"tecnorev.{name}." for name in modules)
    found: Codes = defaultdict(set)
    for cls in _subclasses(DomainError):
        if cls.__module__.startswith(prefixes):
            found[cls.status_code].add(cls.code)
    return found


def _dependency_codes(route: APIRoute) -> Codes:
    found: Codes = defaultdict(set)
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        for status, codes in (getattr(dependency.call, "error_codes", None) or {}).items():
            found[status].update(codes)
        pending.extend(dependency.dependencies)
    return found


def _inputs(dependant: Dependant) -> tuple[bool, bool, bool]:
    """Whether the route (its dependencies included) takes path, query and body input."""
    path = query = body = False
    pending = [dependant]
    while pending:
        current = pending.pop()
        path = path or bool(current.path_params)
        query = query or bool(current.query_params)
        body = body or bool(current.body_params)
        pending.extend(current.dependencies)
    return path, query, body


def route_codes(route: APIRoute, module: str, modules: Iterable[str]) -> Codes:
    """The codes ``route`` of ``module`` (which depends on ``modules``) may answer with."""
    codes: Codes = defaultdict(set)
    parts: list[Codes] = [ALWAYS, _dependency_codes(route)]
    path, query, body = _inputs(route.dependant)
    writes = bool((route.methods or set()) - {"GET", "HEAD"})
    if writes:
        parts.append(module_codes(modules))
    elif path:
        parts.append({404: module_codes([module]).get(404, set())})
    if path or query or body:
        parts.append(WITH_INPUT)
    if body:
        parts.append(WITH_BODY)
    if writes:
        parts.append(WRITES)
    for part in parts:
        for status, names in part.items():
            codes[status].update(names)
    return codes


def document_errors(
    app: FastAPI, registry: Registry | None, routes: dict[tuple[str, str], tuple[str, APIRoute]]
) -> None:
    """Replace the generic 4XX/5XX answers of ``routes`` ((method, path) -> (module, route))
    with one answer per status, listing its codes."""
    build = app.openapi
    depends = {} if registry is None else {m.name: m.depends_on for m in registry.modules}

    def closure(name: str) -> set[str]:
        found, pending = set(), [name]
        while pending:
            current = pending.pop()
            if current not in found:
                found.add(current)
                pending.extend(depends.get(current, ()))
        return found

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        for (method, path), (owner, route) in routes.items():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _document(operation["responses"], route_codes(route, owner, closure(owner)))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(responses: dict[str, Any], codes: Codes) -> None:
    responses.pop("4XX", None)
    responses.pop("5XX", None)
    for status in sorted(codes):
        names = sorted(codes[status])
        if not names:
            continue
        responses[str(status)] = {
            "description": f"{HTTPStatus(status).phrase}: `error.code` is "
            + ", ".join(f"`{name}`" for name in names),
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
            },
            "x-error-codes": names,
        }
