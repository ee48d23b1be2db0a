"""Admission control: a bounded number of requests in flight per process.

Why it makes the request path impossible to starve: a sync route, each sync dependency and
the validation of a sync route's return value each take a thread from anyio's default pool,
one after the other, never two at once.  A request may take a row lock in one of them and
need the next thread before it can commit and let the lock go.  If the requests waiting on
that lock could hold every thread, the holder would never get one: the process stops for
good (seen with 40+ requests on one order).  With at most ``limit`` requests admitted and at
least ``limit`` threads, the waiters hold at most ``limit - 1`` threads and a thread is always
free for the holder, whatever a route, present or future, does.  The same count bounds the
connections a process checks out (one per pool and request), so the pools are sized to it.

The excess waits in a short line (``backlog`` requests, ``wait`` seconds each, on the event
loop: no thread, no connection), then is answered ``503 overloaded`` with ``Retry-After``.
Paths in ``exempt`` (health, readiness) are never queued behind the application.  A body is
read whole before its request takes a place, within ``body_timeout`` (else ``408``), so
clients that send slowly cannot hold the places.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass

import anyio
import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tecnorev.core import metrics
from tecnorev.core.settings import CoreSettings
from tecnorev.core.web.errors import send_error

log = logging.getLogger("tecnorev.api")
REPORT_EVERY = 5.0  # seconds between two log lines about refused requests


@dataclass(frozen=True)
class AdmissionLimits:
    limit: int = 40
    backlog: int = 40
    wait: float = 1.0
    body_timeout: float = 10.0

    @classmethod
    def from_env(cls, limit: int) -> AdmissionLimits:
        """``TECNOREV_MAX_IN_FLIGHT`` (default ``limit``), ``TECNOREV_ADMISSION_BACKLOG``
        (default the same), ``TECNOREV_ADMISSION_WAIT`` (default 1 s) and
        ``TECNOREV_REQUEST_BODY_TIMEOUT`` (default 10 s)."""
        settings = CoreSettings()
        limit = settings.max_in_flight or limit
        return cls(
            limit=limit,
            backlog=settings.admission_backlog or limit,
            wait=settings.admission_wait,
            body_timeout=settings.request_body_timeout,
        )


class Admission:
    """ASGI middleware admitting at most ``limits.limit`` HTTP requests at once."""

    def __init__(
        self, app: ASGIApp, *, limits: AdmissionLimits, exempt: Collection[str] = ()
    ) -> None:
        self.app = app
        self.limits = limits
        self.exempt = frozenset(exempt)
        self._slots: anyio.Semaphore | None = None
        self._waiting = 0
        self._retry_after = str(max(1, math.ceil(limits.wait)))
        self._refused = 0
        self._quiet_until = 0.0

    @property
    def in_flight(self) -> int:
        return 0 if self._slots is None else self.limits.limit - self._slots.value

    @property
    def waiting(self) -> int:
        return self._waiting

    def _ready_slots(self) -> anyio.Semaphore:
        if self._slots is None:
            # Made on first use, inside the event loop; the loop's thread pool must have a
            # thread for every admitted request (see the module's docstring).
            threads = anyio.to_thread.current_default_thread_limiter()
            threads.total_tokens = max(threads.total_tokens, self.limits.limit)
            self._slots = anyio.Semaphore(self.limits.limit)
        return self._slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if _has_body(scope):
            # read before taking a place: clients sending their bodies slowly would
            # otherwise hold every place while the rest is refused
            try:
                with anyio.fail_after(self.limits.body_timeout):
                    received = await _whole_body(receive)
            except TimeoutError:
                metrics.ADMISSION_REFUSED.labels("body_timeout").inc()
                await send_error(
                    send, 408, "request_timeout", "the request body arrived too slowly"
                )
                return
            if received is None:
                return  # the client went away
            receive = _replaying(received, receive)
        slots = self._ready_slots()
        try:
            slots.acquire_nowait()
        except anyio.WouldBlock:
            if not await self._wait_for(slots):
                await self._refuse(scope, send)
                return
        try:
            await self.app(scope, receive, send)
        finally:
            slots.release()

    async def _wait_for(self, slots: anyio.Semaphore) -> bool:
        if self._waiting >= self.limits.backlog:
            return False
        self._waiting += 1
        try:
            with anyio.move_on_after(self.limits.wait):
                await slots.acquire()
                return True
            return False
        finally:
            self._waiting -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        self._refused += 1
        metrics.ADMISSION_REFUSED.labels("overloaded").inc()
        now = time.monotonic()
        if now >= self._quiet_until:  # a storm logs a line every few seconds, not one a request
            log.warning(
                "overloaded: refused %d request(s) since the last report, latest %s %s "
                "(%d in flight, %d waiting)",
                self._refused, scope.get("method", ""), scope["path"],
                self.in_flight, self._waiting,
            )  # fmt: skip
            self._refused = 0
            self._quiet_until = now + REPORT_EVERY
        await send_error(
            send,
            503,
            "overloaded",
            "the server is busy; retry after the delay it gives",
            [(b"retry-after", self._retry_after.encode())],
        )


def _has_body(scope: Scope) -> bool:
    headers = dict(scope["headers"])
    length = headers.get(b"content-length", b"0")
    return b"transfer-encoding" in headers or (length.isdigit() and int(length) > 0)


async def _whole_body(receive: Receive) -> list[Message] | None:
    """The request's body messages, or ``None`` when the client disconnected first."""
    messages: list[Message] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        messages.append(message)
        if not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
