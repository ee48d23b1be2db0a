"""Keep-alive connections spread evenly over the workers of one server.

The kernel hands each new connection to one of the workers' ``SO_REUSEPORT`` sockets by a
hash of its addresses, and keep-alive keeps it there: the 32 connections a client pool opens
at once split 20/12 as often as 16/16, and the worker holding 20 answers its clients more
slowly while the other has time to spare (50-order pages, two workers: p99 57 ms split 20/12,
39 to 43 ms split 16/16).

Each worker publishes how many client connections it holds, in memory the workers share.
One that holds more than its share (all the workers' connections over the workers, rounded
up) answers its next request with ``Connection: close``, as it would on shutdown, once per
connection too many.  The request is answered in full; the client opens a new connection,
which the kernel hashes afresh.  A few such reconnections settle the split, and a split
within its share costs nothing more than reading a few integers per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tecnorev.core import metrics

PROTOCOL = "tecnorev.api.spread:SpreadingHttpToolsProtocol"  # uvicorn's ``http`` setting
log = logging.getLogger(__name__)
CLAIM_WAIT = 1.0  # seconds a worker waits for the slots' lock before it goes without a slot


class Spread:
    """What the workers share: a slot per worker (its process id and its connections).

    Made by the server before it starts its workers, and handed to each in uvicorn's
    configuration (``config.spread``), which is pickled when a worker is started."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
        self._owners = context.Array("q", workers)  # with a lock: slots are claimed under it
        self._held = context.Array("i", workers, lock=False)  # written by their owners only
        # (process id, slot or None): this process's, not that of a copy made by fork
        self._slot: tuple[int, int | None] | None = None
        self._closing = 0  # connections this worker is closing after their answer

    def _claim(self) -> int | None:
        """This worker's slot: a free one, or that of a worker that died (a restarted worker
        takes its place).  ``None`` when every slot is held by a live worker (one added with
        SIGTTIN beyond ``--workers``): that worker keeps every connection it is given."""
        pid = os.getpid()
        slot: int | None = None
        lock = self._owners.get_lock()
        # bounded: a worker killed while holding it (a few reads long) must not stall the next
        if not lock.acquire(timeout=CLAIM_WAIT):
            log.warning("worker %d: no slot to share its connections count (lock held)", pid)
            self._slot = (pid, None)
            return None
        try:
            owners: list[int] = self._owners[:]
            for index, owner in enumerate(owners):
                if owner in (0, pid) or not _alive(owner):
                    self._owners[index] = pid
                    self._held[index] = 0
                    slot = index
                    break
        finally:
            lock.release()
        if slot is None:
            log.warning(
                "worker %d: more workers than the %d planned; it does not even out its "
                "connections with the others",
                pid, len(self._owners),
            )  # fmt: skip
        self._slot = (pid, slot)
        return slot

    def holds(self, connections: int) -> None:
        """This worker now holds ``connections`` client connections."""
        mine = self._slot
        slot = mine[1] if mine is not None and mine[0] == os.getpid() else self._claim()
        if slot is not None:
            self._held[slot] = connections

    def closing(self, change: int) -> None:
        self._closing += change

    def over(self, connections: int) -> bool:
        """Whether this worker, holding ``connections``, holds more than its share once the
        connections it is already closing are gone."""
        if self._slot is None or self._slot[1] is None:
            return False
        share = math.ceil(sum(self._held) / len(self._held))
        return connections - self._closing > share


def _alive(pid: int) -> bool:
    # Linux only, as the workers' SO_REUSEPORT sockets are (see ``serve._run_workers``)
    return os.path.exists(f"/proc/{pid}")


class SpreadingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, which closes a connection after its answer while its
    worker holds more than its share (``Spread``).  Without ``config.spread``, uvicorn's own."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._spread: Spread | None = getattr(config, "spread", None)
        self._closing = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self._spread is not None:
            self._spread.holds(len(self.connections))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._spread is not None:
            if self._closing:
                self._spread.closing(-1)
            self._spread.holds(len(self.connections))

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        spread = self._spread
        if (
            spread is not None
            and self.cycle is not before  # not an upgrade, which makes no cycle
            and not self._closing
            and self.cycle.keep_alive
            and spread.over(len(self.connections))
        ):
            self.cycle.keep_alive = False  # uvicorn answers "Connection: close", then closes
            self._closing = True
            spread.closing(1)
            metrics.CONNECTIONS_REBALANCED.inc()
