r"""Routes whose dependencies are solved without FastAPI's per-request machinery.

FastAPI solves a route's dependencies anew on every request: it walks the dependency tree,
validates each query parameter on its own and runs each ``yield`` dependency in an exit
stack.  For a listing page that is most of the server's work: measured in-process on
``GET /inventory/stock?limit=50``, solving its four dependencies (session, caller, query,
unknown-parameter check) cost more than reading and serializing the page.

A dependency may therefore say how its value comes from the request alone, with no I/O:
``dependency.from_request = function(request) -> (value, close)``, where ``close`` (or
``None``) is called once the route returned, with the exception it raised or ``None``, as
the code after a ``yield`` would run.  A ``Route`` whose dependencies all say so (and which
takes nothing else: no path, header or body parameter, an ``async`` endpoint answering a
``Response``) calls them in the order FastAPI would, then its endpoint; any other route is
left to FastAPI.  The OpenAPI document is FastAPI's, from the same declarations, and a
dependency override set on the app sends every request back through FastAPI, so tests that
override a dependency see it used.

``Router`` is the ``APIRouter`` every module's routes hang on: its routes are ``Route``\s,
and a request whose path cannot be one of them (it lacks the router's prefix) is turned
away before any route is tried.  FastAPI tries the routes of each included router in turn:
without that check, a request for the last module's routes first failed to match every
route of the others (about 25 µs per module, measured).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, cast, get_type_hints

import fastapi.routing
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIRouter
from starlette.routing import Match
from starlette.types import Scope

Close = Callable[[BaseException | None], None]
FromRequest = Callable[[Request], tuple[Any, Close | None]]
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Endpoint = Callable[..., Coroutine[Any, Any, Response]]


class Route(APIRoute):
    """An ``APIRoute`` that solves ``from_request`` dependencies itself (see the module):
    ``APIRouter(route_class=Route)``."""

    # whether the handler last built (the one the app serves) skips FastAPI's solving
    lean = False

    def get_route_handler(self) -> Handler:
        standard = super().get_route_handler()
        plan = _plan(self, _effective_dependant(self))
        self.lean = plan is not None
        if plan is None:
            return standard
        return _lean_handler(plan, cast(Endpoint, self.dependant.call), standard)


class Router(APIRouter):
    """``APIRouter`` with ``Route`` as its route class and a quick refusal of the paths it
    cannot match (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", Route)
        super().__init__(*args, **kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # Every route's path starts with the prefix, whatever the router is included under
        # (and the request's path holds its root path too): without it, none can match
        if self.prefix and self.prefix not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)


def _effective_dependant(route: APIRoute) -> Dependant | None:
    """The dependencies of ``route`` as included in the app (those of ``include_router``
    first), which FastAPI passes to the handler it builds in a context variable; ``None``
    when that variable is not there to read (another FastAPI), so that a dependency added
    at inclusion is never skipped: the route is then left to FastAPI."""
    context_var = getattr(fastapi.routing, "_effective_route_context_var", None)
    if context_var is None:
        return None
    context = context_var.get()
    if context is None or getattr(context, "original_route", None) is not route:
        return route.dependant  # built for the route itself, not for an inclusion
    dependant = getattr(context, "dependant", None)
    return dependant if isinstance(dependant, Dependant) else None


def _plan(
    route: APIRoute, dependant: Dependant | None
) -> list[tuple[str | None, FromRequest]] | None:
    """``(parameter name, from_request)`` per dependency in FastAPI's order, or ``None``
    when the route needs FastAPI's solving."""
    if dependant is None:
        return None
    call = dependant.call
    if (
        call is None
        or not inspect.iscoroutinefunction(call)
        or not _answers_response(call)
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or route.body_field is not None
        or dependant.request_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    ):
        return None
    plan: list[tuple[str | None, FromRequest]] = []
    for sub in dependant.dependencies:
        solve = getattr(sub.call, "from_request", None)
        if solve is None:
            return None
        plan.append((sub.name, solve))
    return plan


def _answers_response(call: Callable[..., Any]) -> bool:
    try:
        answer = get_type_hints(call).get("return")
    except Exception:
        return False
    return isinstance(answer, type) and issubclass(answer, Response)


def _lean_handler(
    plan: list[tuple[str | None, FromRequest]],
    endpoint: Endpoint,
    standard: Handler,
) -> Handler:
    async def handle(request: Request) -> Response:
        if request.app.dependency_overrides:
            return await standard(request)
        values: dict[str, Any] = {}
        closers: list[Close] = []
        try:
            for name, solve in plan:
                value, close = solve(request)
                if close is not None:
                    closers.append(close)
                if name is not None:
                    values[name] = value
            response = await endpoint(**values)
        except BaseException as exc:
            _close(closers, exc)
            raise
        _close(closers, None)
        return response

    return handle


def _close(closers: list[Close], error: BaseException | None) -> None:
    """Run every closer, the last opened first, each told of the error so far; raise what
    a closer raised (the route's own error is re-raised by the caller)."""
    raised: BaseException | None = None
    for close in reversed(closers):
        try:
            close(raised or error)
        except BaseException as exc:
            raised = exc
    if raised is not None and raised is not error:
        raise raised
