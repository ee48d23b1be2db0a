"""In-process domain events, delivered after the publishing transaction commits.

Dependencies between modules point one way (sales never imports payments), yet some
reactions flow back: a cancelled order must refund its payment.  The upstream module
``publish``es an event on its session; a downstream module subscribes through its
``Module(subscribers=...)``.  Nothing is delivered for a transaction that rolls back (nor
what was published inside a savepoint that rolls back), and each reaction runs in a unit of
work of its own, after the publisher's commit: a failing reaction is logged and never undoes
what the publisher already committed.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession

from tecnorev.core.errors import DiscoveryError

if TYPE_CHECKING:
    from sqlmodel import Session

    from tecnorev.core.registry import Registry

log = logging.getLogger("tecnorev.events")

_QUEUED = "tecnorev.events.queued"
_COMMITTED = "tecnorev.events.committed"
_SAVEPOINTS = "tecnorev.events.savepoints"

Handler = Callable[["Session", "Event"], None]


@dataclass(frozen=True)
class Event:
    name: str
    payload: Mapping[str, Any] = field(default_factory=dict)


def publish(session: OrmSession, name: str, **payload: Any) -> Event:
    """Queue an event on ``session``; it is delivered only if the session commits."""
    event = Event(name, payload)
    session.info.setdefault(_QUEUED, []).append(event)
    return event


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
def _handlers(registry: Registry) -> dict[str, tuple[Handler, ...]]:
    found: dict[str, list[Handler]] = {}
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
            found.setdefault(name, []).append(handler)
    return {name: tuple(handlers) for name, handlers in found.items()}


def deliver(events: list[Event], *, engine: Any, registry: Registry | None = None) -> None:
    """Run every subscriber of each event, each in its own committed unit of work; events a
    subscriber publishes go to the same ``registry``'s subscribers once it commits."""
    if not events:
        return
    from sqlmodel import Session

    from tecnorev.core.registry import get_registry

    registry = registry or get_registry()
    handlers = _handlers(registry)
    for event in events:
        for handler in handlers.get(event.name, ()):
            with Session(engine) as session:
                try:
                    handler(session, event)
                    session.commit()
                except Exception:
                    session.rollback()
                    log.exception(
                        "subscriber %s.%s of %s failed",
                        handler.__module__,
                        handler.__qualname__,
                        event.name,
                    )
                    continue
            deliver(take_committed(session), engine=engine, registry=registry)
