"""Query parameters a route does not declare are refused (422), not silently ignored: a
misspelt filter or sort (``?sortt=-total``) would otherwise answer with the default page as if
it had been applied."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

_declared: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """An app-wide dependency: every query parameter must be one the route declares.

    ``async`` although it awaits nothing: FastAPI runs a plain function on the thread pool,
    a hand-off every request would pay."""
    _refuse_unknown(request)


def _refuse_unknown(request: Request) -> None:
    query = request.query_params
    if not query:
        return
    route: Any = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not getattr(route, "include_in_schema", True):
        return  # a route outside the contract (a redirect of a former path) passes them on
    known = _declared.get(id(route))
    if known is None:
        known = _declared[id(route)] = _query_names(dependant)
    unknown = [name for name in query if name not in known]
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "unknown_parameter",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this route takes: "
                    f"{', '.join(sorted(known)) or 'none'}",
                    "input": query[name],
                }
                for name in unknown
            ]
        )


def _refused_unknown(request: Request) -> tuple[None, None]:
    _refuse_unknown(request)
    return None, None


refuse_unknown_query.from_request = _refused_unknown  # type: ignore[attr-defined]  # web.routing
