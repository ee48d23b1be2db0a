"""An application shell with the platform's error handling, unit of work and body limit.

The API service composes it from every installed module; a package's own tests build one
from just its router, so routes are tested through the same stack without the service.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tecnorev.core.errors import DiscoveryError
from tecnorev.core.web.admission import Admission, AdmissionLimits
from tecnorev.core.web.docs import serve_docs_offline
from tecnorev.core.web.documented import document_errors
from tecnorev.core.web.errors import ERROR_RESPONSES, install_error_handlers, send_error
from tecnorev.core.web.observe import RequestObserver
from tecnorev.core.web.strict import refuse_unknown_query

if TYPE_CHECKING:
    from tecnorev.core.registry import Registry

API_PREFIX = "/api/v1"
UNQUEUED_PATHS = ("/health", "/ready", "/metrics")
MAX_BODY_BYTES = 1_000_000


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with a 413 before anything parses it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await send_error(send, 400, "bad_request", "Content-Length is not a number")
            return
        if declared is not None and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge(self.limit)
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await _too_large(send, self.limit)


class _BodyTooLarge(StarletteHTTPException):
    """Raised while a body is read.  An HTTPException, because FastAPI turns any other error
    raised while it parses a body into a 400; the error mapping answers this one with 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")


async def _too_large(send: Send, limit: int) -> None:
    await send_error(send, 413, "payload_too_large", f"the request body exceeds {limit} bytes")


def make_app(
    routers: Iterable[tuple[str, APIRouter]] = (),
    *,
    engine: sa.Engine | None = None,
    read_engine: sa.Engine | None = None,
    registry: Registry | None = None,
    title: str = "Tecno Rev",
    version: str = "0.1.0",
    tags: Sequence[dict[str, Any]] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    admission: AdmissionLimits | None = None,
    unqueued_paths: Collection[str] = UNQUEUED_PATHS,
    **fastapi_options: Any,
) -> FastAPI:
    """A FastAPI app with each ``(tag, router)`` under ``/api/v1``; events published in its
    requests go to ``registry``'s subscribers (default: the installed modules).

    Every request gets an id, an access log line and its metrics (``web.observe``); the docs
    pages are served from assets in the wheel (``web.docs``).

    At most ``admission.limit`` requests run at once (default 40, see ``web.admission``),
    except those for ``unqueued_paths``, which must not take a thread of the default pool.

    A module's routes refuse query parameters they do not declare (``web.strict``).

    Two routers claiming the same method and path are refused: with packages released
    separately, a silent override would hide one package's endpoint behind another's.  So is
    a route demanding a permission code (a dependency carrying ``permission``, as auth's
    ``require_permission`` makes) that no module of ``registry`` declares.
    """
    app = FastAPI(
        title=title,
        version=version,
        openapi_tags=list(tags),
        docs_url=None,  # served below from the wheel's own assets, not a CDN
        redoc_url=None,
        **fastapi_options,
    )
    serve_docs_offline(app)
    app.state.engine = engine
    app.state.read_engine = read_engine  # for ReadSessionDep; default: made from ``engine``
    app.state.registry = registry
    install_error_handlers(app)
    # Admission reads a body whole before the request takes a place; the body limit is
    # outside it, so that read is bounded too (the last one added is the outermost)
    app.add_middleware(
        Admission, limits=admission or AdmissionLimits(), exempt=frozenset(unqueued_paths)
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    # outermost: every answer gets its request id, access line and metrics, refusals too
    app.add_middleware(RequestObserver, prefix=API_PREFIX, quiet_paths=frozenset(unqueued_paths))
    claimed: dict[tuple[str, str], str] = {}
    documented: dict[tuple[str, str], tuple[str, APIRoute]] = {}
    declared = None if registry is None else set(registry.permissions)
    for tag, router in routers:
        for route in router.routes:
            _check_permissions(route, tag, declared)
            for method in getattr(route, "methods", None) or ():
                key = (method, API_PREFIX + getattr(route, "path", ""))
                if key in claimed:
                    raise DiscoveryError(
                        f"modules {claimed[key]!r} and {tag!r} both define {key[0]} {key[1]}"
                    )
                claimed[key] = tag
                if isinstance(route, APIRoute):
                    documented[key] = (tag, route)
        app.include_router(
            router,
            prefix=API_PREFIX,
            tags=[tag],
            responses=ERROR_RESPONSES,
            dependencies=[Depends(refuse_unknown_query)],
            generate_unique_id_function=partial(operation_id, tag),
        )
    document_errors(app, registry, documented)
    app.state.allowed_methods = _allowed_methods(claimed)
    return app


def _allowed_methods(claimed: dict[tuple[str, str], str]) -> Callable[[str], set[str]]:
    """Every method the API answers on a path: for the ``Allow`` header of a 405, which
    Starlette fills with the methods of the first route whose path matched only."""
    patterns: dict[str, tuple[re.Pattern[str], set[str]]] = {}
    for method, path in claimed:
        pattern = patterns.setdefault(path, (compile_path(path)[0], set()))
        pattern[1].add(method)

    def allowed(path: str) -> set[str]:
        return {m for regex, methods in patterns.values() if regex.match(path) for m in methods}

    return allowed


def operation_id(tag: str, route: APIRoute) -> str:
    """``{tag}-{name}`` (``catalog-list-products``): what generated clients name their calls."""
    return f"{tag}-{route.name.replace('_', '-')}"


def _check_permissions(route: Any, tag: str, declared: set[str] | None) -> None:
    dependant = getattr(route, "dependant", None)
    if declared is None or dependant is None:
        return
    pending = list(dependant.dependencies)
    while pending:
        dependency = pending.pop()
        pending.extend(dependency.dependencies)
        code = getattr(dependency.call, "permission", None)
        if isinstance(code, str) and code not in declared:
            raise DiscoveryError(
                f"{tag}'s route {getattr(route, 'path', '?')} demands the permission code "
                f"{code!r}, which no installed module declares (Module.permissions)"
            )
