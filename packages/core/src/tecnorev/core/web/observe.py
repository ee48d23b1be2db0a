"""What every request leaves behind: its id, its access line and its metrics.

The outermost middleware: it sees every answer, including the 503s of admission and the 413s
of the body limit.  The request's id is the client's ``X-Request-ID`` when that is a plain
bounded token, else a new one; it is echoed in the response, carried by every log line written
while the request runs (worker threads included) and set on the request's trace span.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tecnorev.core import metrics
from tecnorev.core.logs import REQUEST_ID_HEADER, enter_request, leave_request, request_id_from
from tecnorev.core.settings import CoreSettings

log = logging.getLogger("tecnorev.access")

UNROUTED = "<unrouted>"  # answered before routing (refused, too large) or by no route
_HEADER = REQUEST_ID_HEADER.encode()


class RequestObserver:
    def __init__(
        self, app: ASGIApp, *, prefix: str = "", quiet_paths: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.prefix = prefix  # where the routers are included (their routes omit it)
        self.metrics = CoreSettings().metrics
        # probes and scrapes: counted, but no access line every few seconds per replica
        self.quiet_paths = quiet_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(_header(scope, _HEADER))
        status = 500  # unless a response starts: an error escaped every handler
        if self.metrics:
            metrics.IN_FLIGHT.inc()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_HEADER, request_id.encode())]
            await send(message)

        token = enter_request(request_id)
        _tag_span(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            try:
                self._record(scope, status, time.perf_counter() - started)
            finally:
                leave_request(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        """The request's metrics and access line (still inside its context: the line carries
        its id and user)."""
        route = self._template(scope)
        method = scope["method"]
        if self.metrics:
            metrics.IN_FLIGHT.dec()
            metrics.REQUEST_DURATION.labels(method, route, str(status)).observe(elapsed)
        if scope["path"] not in self.quiet_paths and log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %d %.1fms",
                method, scope["path"], status, elapsed * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0] or None,
                },
            )  # fmt: skip

    def _template(self, scope: Scope) -> str:
        route = getattr(scope.get("route"), "path", None)
        if route is None:
            return UNROUTED
        if (
            self.prefix
            and scope["path"].startswith(self.prefix)
            and not route.startswith(self.prefix)
        ):
            return self.prefix + route
        return route


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _tag_span(request_id: str) -> None:
    """Name the request's id on its trace span, when tracing is on."""
    try:
        from opentelemetry import trace
    except ImportError:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("http.request_id", request_id)
