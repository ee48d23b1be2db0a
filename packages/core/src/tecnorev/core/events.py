"""Domain events, stored with the change that publishes them and delivered at least once.

Dependencies between modules point one way (sales never imports payments), yet some
reactions flow back: a cancelled order must refund its payment.  The upstream module
``publish``es an event on its session; a downstream module subscribes through its
``Module(subscribers=...)``.

``publish`` writes one row per subscriber into core's outbox (``tecnorev.core.outbox``) in
the publishing transaction: nothing is stored for a transaction (or a savepoint) that rolls
back, and nothing committed is lost when the process dies before delivering it.  After the
commit the publisher delivers its rows at once, each in a unit of work of its own that also
marks the row delivered; a failing subscriber never undoes what the publisher committed, and
its row is retried later by a dispatcher.  A subscriber's database work commits with the
mark on its row, so that work is done once however often the event is attempted; work outside
the database (a call to a provider) must be idempotent itself.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession

from tecnorev.core.errors import DiscoveryError
from tecnorev.core.logs import current_request

if TYPE_CHECKING:
    from sqlmodel import Session

    from tecnorev.core.registry import Registry

log = logging.getLogger("tecnorev.events")

REGISTRY = "tecnorev.registry"  # session.info: whose subscribers its events go to
NOTIFY_CHANNEL = "tecnorev_outbox"
_QUEUED = "tecnorev.events.queued"
_COMMITTED = "tecnorev.events.committed"
_SAVEPOINTS = "tecnorev.events.savepoints"
_NOTIFIED = "tecnorev.events.notified"

Handler = Callable[["Session", "Event"], None]


@dataclass(frozen=True)
class Event:
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    deliveries: tuple[int, ...] = ()  # its outbox rows, one per subscriber
    request_id: str | None = None  # the request that published it


def publish(session: OrmSession, name: str, **payload: Any) -> Event:
    """Store an event for each subscriber in ``session``'s transaction; it is delivered only
    if that transaction commits.  ``payload`` must be JSON (strings for money and times)."""
    from tecnorev.core.db import table_of
    from tecnorev.core.outbox.models import DeliveryStatus, OutboxMessage
    from tecnorev.core.types import utcnow

    context = current_request()
    request_id = context.request_id if context else None
    targets = subscribers(registry_of(session)).get(name, {})
    deliveries: tuple[int, ...] = ()
    if targets:
        now = utcnow()
        table = table_of(OutboxMessage)
        rows = [
            {
                "event": name,
                "subscriber": target,
                "payload": dict(payload),
                "request_id": request_id,
                "status": DeliveryStatus.PENDING,
                "attempts": 0,
                "available_at": now,
                "created_at": now,
            }
            for target in targets
        ]
        # on the connection: no autoflush, so what the caller left pending stays pending
        inserted = session.connection().execute(sa.insert(table).returning(table.c.id), rows)
        deliveries = tuple(inserted.scalars())
        _wake_dispatchers(session)
    event = Event(name, payload, deliveries, request_id)
    session.info.setdefault(_QUEUED, []).append(event)
    return event


def registry_of(session: OrmSession) -> Registry:
    from tecnorev.core.registry import get_registry

    return session.info.get(REGISTRY) or get_registry()


def _wake_dispatchers(session: OrmSession) -> None:
    """PostgreSQL: a NOTIFY, sent by the server when (and only if) the transaction commits."""
    connection = session.connection()
    if connection.dialect.name != "postgresql" or session.info.get(_NOTIFIED):
        return
    connection.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
    session.info[_NOTIFIED] = True


def has_queued(session: OrmSession) -> bool:
    """Whether events wait on ``session`` for its commit."""
    return bool(session.info.get(_QUEUED))


@sa_event.listens_for(OrmSession, "after_transaction_create")
def _savepoint_began(session: OrmSession, transaction: Any) -> None:
    if transaction.nested:  # where its events start, to drop them unless it is released
        queued = session.info.get(_QUEUED, ())
        session.info.setdefault(_SAVEPOINTS, {})[transaction] = len(queued)


@sa_event.listens_for(OrmSession, "after_commit")
def _committed(session: OrmSession) -> None:
    if session.in_nested_transaction():
        # A savepoint released: its events stay queued, since they still depend on the
        # outermost transaction committing.
        session.info.get(_SAVEPOINTS, {}).pop(session.get_nested_transaction(), None)
        return
    queued = session.info.pop(_QUEUED, None)
    if queued:
        session.info.setdefault(_COMMITTED, []).extend(queued)


@sa_event.listens_for(OrmSession, "after_transaction_end")
def _ended(session: OrmSession, transaction: Any) -> None:
    if transaction.parent is None:
        # A commit already moved its events on; after a rollback, or a close without
        # either, nothing it queued survives.
        session.info.pop(_QUEUED, None)
        session.info.pop(_SAVEPOINTS, None)
        session.info.pop(_NOTIFIED, None)
        return
    # A savepoint that ends still marked was rolled back (by the caller, or by a failed
    # flush inside it, which never reports a rollback of the savepoint itself).
    start = session.info.get(_SAVEPOINTS, {}).pop(transaction, None)
    queued = session.info.get(_QUEUED)
    if start is not None and queued:
        del queued[start:]


def take_committed(session: OrmSession) -> list[Event]:
    """The events of transactions ``session`` committed, removed from it."""
    return session.info.pop(_COMMITTED, [])


@lru_cache(maxsize=8)
def subscribers(registry: Registry) -> dict[str, dict[str, Handler]]:
    """Event name -> ``{"<module>:<dotted.path>:<function>": handler}`` of ``registry``."""
    found: dict[str, dict[str, Handler]] = {}
    for module in registry.modules:
        for name, target in module.subscribers:
            dotted, _, attribute = target.partition(":")
            try:
                handler = getattr(importlib.import_module(dotted), attribute)
            except (ImportError, AttributeError) as exc:
                raise DiscoveryError(
                    f"module {module.name!r} subscribes {target!r} to {name!r}, "
                    f"which cannot be loaded: {exc}"
                ) from exc
            found.setdefault(name, {})[f"{module.name}:{target}"] = handler
    return found


def deliver(events: list[Event], *, engine: Any, registry: Registry | None = None) -> None:
    """Deliver the outbox rows of ``events`` now, each in its own unit of work (rows another
    dispatcher holds, or already delivered, are left to it).  A subscriber that raises is
    logged and its row retried later; nothing here raises for it."""
    from tecnorev.core.outbox.dispatch import deliver_one

    for event in events:
        for delivery in event.deliveries:
            try:
                deliver_one(engine, delivery, registry=registry)
            except Exception:  # the database itself failed: the row waits for a dispatcher
                log.exception("delivery %d of %s: left for the dispatcher", delivery, event.name)
