"""``tecnorev events`` (what the outbox holds: list, show, retry, prune) and ``tecnorev
worker`` (a dispatcher process)."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import timedelta
from typing import Annotated, Any

import sqlalchemy as sa
import typer

from tecnorev.core.db import table_of
from tecnorev.core.outbox.models import DeliveryStatus, OutboxMessage

log = logging.getLogger("tecnorev.events")
_outbox = table_of(OutboxMessage)

events = typer.Typer(
    help="The event outbox: deliveries pending, delivered and dead; retry the dead.",
    no_args_is_help=True,
)


def _engine() -> sa.Engine:
    from tecnorev.core.db import check_connection, create_db_engine

    engine = create_db_engine()
    check_connection(engine)  # DatabaseUnavailable: a message and exit 2 from the shell
    return engine


@events.command("list")
def list_deliveries(
    status: Annotated[
        str, typer.Option(help="pending, delivered, dead or all")
    ] = DeliveryStatus.DEAD.value,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Deliveries by status, newest first (default: the dead ones)."""
    query = sa.select(_outbox).order_by(_outbox.c.id.desc()).limit(limit)
    if status != "all":
        query = query.where(_outbox.c.status == _status(status))
    engine = _engine()
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
        counts: dict[str, int] = dict(
            connection.execute(
                sa.select(_outbox.c.status, sa.func.count()).group_by(_outbox.c.status)
            ).all()
        )
    engine.dispose()
    if as_json:
        for row in rows:
            typer.echo(json.dumps(_public(row), default=str))
        return
    totals = ", ".join(f"{s.value} {counts.get(s, counts.get(s.value, 0))}" for s in DeliveryStatus)
    typer.echo(f"outbox: {totals}")
    for row in rows:
        error = (row["last_error"] or "").strip().splitlines()
        typer.echo(
            f"{row['id']:>8}  {row['status']:<9}  {row['event']:<24}  {row['subscriber']}  "
            f"attempts {row['attempts']}" + (f"  last error: {error[-1]}" if error else "")
        )


@events.command("show")
def show(delivery: int) -> None:
    """One delivery whole: its payload, request id and last error."""
    engine = _engine()
    with engine.connect() as connection:
        row = connection.execute(sa.select(_outbox).where(_outbox.c.id == delivery)).mappings()
        found = row.first()
    engine.dispose()
    if found is None:
        typer.echo(f"error: there is no delivery {delivery}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(_public(found), default=str, indent=2))


@events.command("retry")
def retry(
    deliveries: Annotated[list[int] | None, typer.Argument(help="delivery ids")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead delivery")] = False,
) -> None:
    """Make dead deliveries pending again, due now, with all their attempts back."""
    if not deliveries and not all_dead:
        typer.echo("error: name the deliveries to retry, or --all-dead", err=True)
        raise typer.Exit(2)
    from tecnorev.core.types import utcnow

    condition = _outbox.c.status == DeliveryStatus.DEAD
    if deliveries:
        condition = condition & _outbox.c.id.in_(deliveries)
    engine = _engine()
    with engine.begin() as connection:
        revived = (
            connection.execute(
                sa.update(_outbox)
                .where(condition)
                .values(status=DeliveryStatus.PENDING, attempts=0, available_at=utcnow())
                .returning(_outbox.c.id)
            )
            .scalars()
            .all()
        )
        if engine.dialect.name == "postgresql" and revived:
            from tecnorev.core.events import NOTIFY_CHANNEL

            connection.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")
    engine.dispose()
    missing = sorted(set(deliveries or ()) - set(revived))
    typer.echo(
        f"{len(revived)} delivery(ies) pending again: {', '.join(map(str, sorted(revived)))}"
    )
    if missing:
        typer.echo(f"not dead (or not there), left alone: {', '.join(map(str, missing))}", err=True)
        raise typer.Exit(1)


@events.command("prune")
def prune(
    older_than: Annotated[float, typer.Option(help="days since delivery", min=0)] = 7.0,
) -> None:
    """Delete delivered rows older than the given days (pending and dead ones stay)."""
    from tecnorev.core.types import utcnow

    engine = _engine()
    with engine.begin() as connection:
        deleted = connection.execute(
            sa.delete(_outbox).where(
                _outbox.c.status == DeliveryStatus.DELIVERED,
                _outbox.c.delivered_at < utcnow() - timedelta(days=older_than),
            )
        ).rowcount
    engine.dispose()
    typer.echo(f"deleted {deleted} delivered row(s) older than {older_than:g} day(s)")


def worker(
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="stop once nothing is due (for cron and tests)")
    ] = False,
    poll: Annotated[
        float | None,
        typer.Option(min=0.05, help="seconds between looks when not woken (TECNOREV_OUTBOX_POLL)"),
    ] = None,
) -> None:
    """Deliver the outbox's events to their subscribers until stopped (SIGTERM, Ctrl+C).

    Any number may run, beside the service's own dispatchers: a delivery is attempted by one
    at a time."""
    from tecnorev.core.outbox.dispatch import Dispatcher
    from tecnorev.core.settings_schema import validate_settings

    validate_settings()
    engine = _engine()
    dispatcher = Dispatcher(engine, poll=poll)
    if until_idle:
        total = 0
        while attempted := dispatcher.run_once():
            total += attempted
        typer.echo(f"attempted {total} delivery(ies); nothing due now")
        engine.dispose()
        return
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("worker: delivering events (polling every %.1fs when not woken)", dispatcher.poll)
    dispatcher.run(stop)
    engine.dispose()
    log.info("worker: stopped")


def _status(text: str) -> DeliveryStatus:
    try:
        return DeliveryStatus(text.strip().lower())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: choose pending, delivered, dead or all", param_hint="--status"
        ) from None


def _public(row: Any) -> dict[str, Any]:
    return {
        key: (value.value if isinstance(value, DeliveryStatus) else value)
        for key, value in row.items()
    }
