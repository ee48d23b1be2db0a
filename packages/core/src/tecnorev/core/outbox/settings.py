"""How the outbox retries deliveries and where they are dispatched."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from tecnorev.core.settings import Duration, SettingsGroup, Switch, WholeNumber


class OutboxSettings(SettingsGroup):
    owner: ClassVar[str] = "core (outbox)"

    outbox_max_attempts: WholeNumber = Field(
        8, description="attempts of a delivery before it is dead (listed by tecnorev events)"
    )
    outbox_retry_delay: Duration = Field(
        2.0, description="wait before the second attempt; doubles with each failure"
    )
    outbox_retry_cap: Duration = Field(600.0, description="longest wait between two attempts")
    outbox_poll: Duration = Field(
        5.0,
        description="how often a dispatcher looks for due deliveries when nothing wakes it "
        "(PostgreSQL wakes it with NOTIFY at each commit)",
    )
    outbox_in_service: Switch = Field(
        True,
        description="each tecnorev serve worker runs a dispatcher (0 when tecnorev worker "
        "processes do it)",
    )
