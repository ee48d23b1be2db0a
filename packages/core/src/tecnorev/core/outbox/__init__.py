"""The transactional outbox: core's own module, with its table and its migration branch.

``publish`` writes one row per subscriber of the event in the publisher's transaction, so a
reaction is stored exactly when the change it reacts to is.  After the commit the publishing
process delivers its rows at once; what it could not (a crash, a subscriber that raised) is
delivered by a dispatcher — in every service worker, or in ``tecnorev worker`` — with retries
and backoff, until the row is delivered or, after its last attempt, dead (``tecnorev events``
lists and retries those).
"""

from tecnorev.core.module import Module

module = Module(
    name="core",
    package="tecnorev.core.outbox",
    description="the platform's own tables: the event outbox",
    settings="tecnorev.core.outbox.settings:OutboxSettings",
    commands=(("events", "tecnorev.core.outbox.cli:events"),),
)
