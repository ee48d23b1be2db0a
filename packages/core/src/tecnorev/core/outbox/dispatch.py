"""Delivering outbox rows: one at a time, claimed so that two dispatchers never run the same
row at once, retried with backoff, dead after the last attempt.

A row is claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (a row another
dispatcher holds is skipped, not waited for); on SQLite every transaction holds the file's
write lock from its start, which serialises dispatchers just as well.  The subscriber runs in
a savepoint of the claiming transaction, and the row's new state commits with its work.
"""

from __future__ import annotations

import logging
import random
import select
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.core import metrics
from tecnorev.core.db import table_of
from tecnorev.core.errors import first_line
from tecnorev.core.events import (
    NOTIFY_CHANNEL,
    REGISTRY,
    Event,
    deliver,
    registry_of,
    subscribers,
    take_committed,
)
from tecnorev.core.logs import request_scope
from tecnorev.core.outbox.models import DeliveryStatus, OutboxMessage
from tecnorev.core.outbox.settings import OutboxSettings
from tecnorev.core.registry import get_registry
from tecnorev.core.types import utcnow

if TYPE_CHECKING:
    from tecnorev.core.registry import Registry

log = logging.getLogger("tecnorev.events")

_outbox = table_of(OutboxMessage)
_ERROR_CHARS = 4000  # of the traceback kept on the row


@dataclass(frozen=True)
class Retry:
    max_attempts: int = 8
    delay: float = 2.0
    cap: float = 600.0

    @classmethod
    def from_settings(cls) -> Retry:
        settings = OutboxSettings()
        return cls(
            settings.outbox_max_attempts, settings.outbox_retry_delay, settings.outbox_retry_cap
        )

    def wait_after(self, attempt: int) -> float:
        """Exponential, capped, with jitter: retries of many rows failing together (the
        provider was down) spread out instead of arriving together again."""
        base = min(self.cap, self.delay * 2 ** (attempt - 1))
        return base * random.uniform(0.8, 1.2)


def _claim(engine: sa.Engine) -> sa.Select:
    """A pending row that is due (one rescheduled since it was listed waits its turn)."""
    query = sa.select(
        _outbox.c.event,
        _outbox.c.subscriber,
        _outbox.c.payload,
        _outbox.c.request_id,
        _outbox.c.attempts,
    ).where(
        _outbox.c.id == sa.bindparam("id"),
        _outbox.c.status == DeliveryStatus.PENDING,
        _outbox.c.available_at <= sa.bindparam("now", type_=_outbox.c.available_at.type),
    )
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def deliver_one(
    engine: sa.Engine,
    delivery: int,
    *,
    registry: Registry | None = None,
    retry: Retry | None = None,
) -> str:
    """Attempt row ``delivery`` if it is pending, due and nobody holds it: ``delivered``,
    ``retry`` (it raised; due again later), ``dead`` (it raised on its last attempt) or
    ``skipped`` (taken, done, not due, or subscribed by a module this process lacks: a
    dispatcher that has it delivers it)."""
    retry = retry or Retry.from_settings()
    with Session(engine, expire_on_commit=False) as session:
        if registry is not None:
            session.info[REGISTRY] = registry
        row = session.execute(_claim(engine), {"id": delivery, "now": utcnow()}).mappings().first()
        handler = None
        if row is not None:
            handler = subscribers(registry_of(session)).get(row["event"], {}).get(row["subscriber"])
        if row is None or handler is None:
            session.rollback()
            return "skipped"
        attempt = row["attempts"] + 1
        event = Event(row["event"], row["payload"], (), row["request_id"])
        claimed = session.get_transaction()
        # the publishing request's id on every line the subscriber logs, wherever it runs
        with request_scope(row["request_id"] or f"outbox-{delivery}"):
            failure = _run(session, handler, event)
            if failure is None and session.get_transaction() is not claimed:
                # it committed or rolled back the claiming transaction itself: its work and
                # this row's state can no longer commit together
                session.rollback()
                failure = "the subscriber ended the delivery's transaction (it must not commit)"
            if failure is None:
                marked = _mark(
                    session, delivery, DeliveryStatus.DELIVERED, attempt, delivered_at=utcnow()
                )
                session.commit()
                outcome = "delivered" if marked else "skipped"
            else:
                dead = attempt >= retry.max_attempts
                wait = retry.wait_after(attempt)
                if session.get_transaction() is not claimed:
                    session.rollback()
                _mark(
                    session,
                    delivery,
                    DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING,
                    attempt,
                    last_error=failure[-_ERROR_CHARS:],
                    available_at=utcnow() + timedelta(seconds=0 if dead else wait),
                )
                session.commit()
                outcome = "dead" if dead else "retry"
                report = log.error if dead else log.warning
                report(
                    "subscriber %s of %s (delivery %d) failed, attempt %d of %d: %s",
                    row["subscriber"], row["event"], delivery, attempt, retry.max_attempts,
                    "dead; tecnorev events retry to try again" if dead
                    else f"next attempt in {wait:.1f}s",
                    extra={"delivery": delivery, "error": failure.strip().splitlines()[-1]},
                )  # fmt: skip
            metrics.OUTBOX_DELIVERIES.labels(row["subscriber"], outcome).inc()
            if outcome == "delivered":
                log.debug(
                    "delivered %s to %s (delivery %d)", row["event"], row["subscriber"], delivery
                )
        published = take_committed(session)
    deliver(published, engine=engine, registry=registry)
    return outcome


def _run(session: Session, handler: Callable[..., Any], event: Event) -> str | None:
    """Run the subscriber in a savepoint; what went wrong, or None."""
    try:
        with session.begin_nested():
            handler(session, event)
            session.flush()
    except Exception:
        return traceback.format_exc()
    return None


def _mark(
    session: Session, delivery: int, status: DeliveryStatus, attempt: int, **values: Any
) -> bool:
    """Record the attempt, if the row is still as claimed (pending, that many attempts)."""
    # an UPDATE's result is a CursorResult, which has the row count
    result: sa.CursorResult[Any] = session.execute(  # type: ignore[assignment]
        sa.update(_outbox)
        .where(
            _outbox.c.id == delivery,
            _outbox.c.status == DeliveryStatus.PENDING,
            _outbox.c.attempts == attempt - 1,
        )
        .values(status=status, attempts=attempt, **values)
    )
    return bool(result.rowcount)


class Dispatcher:
    """Delivers due rows until stopped: woken by PostgreSQL's NOTIFY at each publishing
    commit, else every ``poll`` seconds (SQLite, or a lost listening connection)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        registry: Registry | None = None,
        poll: float | None = None,
        retry: Retry | None = None,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.poll = poll if poll is not None else OutboxSettings().outbox_poll
        self.retry = retry or Retry.from_settings()
        self.batch = batch
        self._listener: Any = None

    def due(self) -> list[int]:
        """Due pending rows this dispatcher can deliver (those of modules it lacks wait for a
        dispatcher that has them: an older worker mid rolling deploy must not kill them)."""
        known = [
            target
            for targets in subscribers(self.registry or get_registry()).values()
            for target in targets
        ]
        if not known:
            return []
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(_outbox.c.id)
                    .where(
                        _outbox.c.status == DeliveryStatus.PENDING,
                        _outbox.c.available_at <= utcnow(),
                        _outbox.c.subscriber.in_(known),
                    )
                    .order_by(_outbox.c.available_at, _outbox.c.id)
                    .limit(self.batch)
                ).scalars()
            )

    def run_once(self) -> int:
        """Attempt every due row (up to a batch); how many were attempted."""
        attempted = 0
        for delivery in self.due():
            try:
                outcome = deliver_one(
                    self.engine, delivery, registry=self.registry, retry=self.retry
                )
            except sa.exc.SQLAlchemyError as exc:
                # The database failed mid-delivery: count the attempt apart, so the row backs
                # off (and ends dead) instead of heading every batch, and go on with the rest.
                self._count_failed_attempt(delivery, exc)
                outcome = "retry"
            attempted += outcome != "skipped"
        return attempted

    def _count_failed_attempt(self, delivery: int, exc: Exception) -> None:
        log.warning("delivery %d: the database failed: %s", delivery, first_line(exc))
        try:
            with self.engine.begin() as connection:
                attempts = connection.execute(
                    sa.select(_outbox.c.attempts).where(
                        _outbox.c.id == delivery, _outbox.c.status == DeliveryStatus.PENDING
                    )
                ).scalar_one_or_none()
                if attempts is None:
                    return
                attempt = attempts + 1
                dead = attempt >= self.retry.max_attempts
                connection.execute(
                    sa.update(_outbox)
                    .where(_outbox.c.id == delivery, _outbox.c.attempts == attempts)
                    .values(
                        attempts=attempt,
                        status=DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING,
                        last_error=f"the database failed: {first_line(exc)}",
                        available_at=utcnow() + timedelta(seconds=self.retry.wait_after(attempt)),
                    )
                )
        except sa.exc.SQLAlchemyError as again:  # still down: run() backs off as a whole
            raise again from exc

    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                attempted = self.run_once()
                failures = 0
            except Exception as exc:  # the database is down or refusing: wait, then again
                failures += 1
                wait = min(60.0, self.poll * failures)
                log.warning("dispatcher: %s; again in %.0fs", first_line(exc), wait)
                self._drop_listener()
                stop.wait(wait)
                continue
            if not attempted:
                self._wait(stop)
        self._drop_listener()

    def _wait(self, stop: threading.Event) -> None:
        """Until a NOTIFY, ``poll`` seconds, or ``stop``; whichever comes first."""
        listener = self._listen()
        if listener is None:
            stop.wait(self.poll)
            return
        waited = 0.0
        while not stop.is_set() and waited < self.poll:
            step = min(1.0, self.poll - waited)  # so that a stop is seen within a second
            try:
                readable, _, _ = select.select([listener], [], [], step)
                if readable:
                    listener.poll()
                    if listener.notifies:
                        listener.notifies.clear()
                        return
            except Exception as exc:
                log.warning("dispatcher: stopped listening (%s); polling", first_line(exc))
                self._drop_listener()
                stop.wait(max(0.0, self.poll - waited))
                return
            waited += step

    def _listen(self) -> Any:
        if self.engine.dialect.name != "postgresql":
            return None
        if self._listener is None:
            try:
                raw = self.engine.raw_connection()
                connection = raw.driver_connection
                assert connection is not None  # a live pool connection has its driver's
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self._listener = (raw, connection)
            except Exception as exc:
                log.warning("dispatcher: cannot listen (%s); polling", first_line(exc))
                return None
        return self._listener[1]

    def _drop_listener(self) -> None:
        if self._listener is not None:
            raw, _ = self._listener
            self._listener = None
            try:
                raw.invalidate()  # autocommit and LISTEN must not go back to a pool
            except Exception as exc:
                log.debug("dispatcher: closing the listener: %s", exc)


class BackgroundDispatcher:
    """A dispatcher on a thread of its own (one per service worker)."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering (again, after a ``stop``: an app's lifespan may run twice)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.dispatcher.run, args=(self._stop,), name="tecnorev-outbox", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("dispatcher: still delivering after %.0fs; leaving it", timeout)
        else:
            self.dispatcher.engine.dispose()
        self._thread = None
