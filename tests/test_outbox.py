"""The outbox: a reaction survives a crash between the publisher's commit and its delivery,
failing subscribers are retried with backoff and end dead (listed, retried by command), and
two dispatchers at once handle each delivery once.

On real databases with the demo data; the subscribers are the installed modules' own, or
wrappers of them that fail on purpose (named, as any module names its subscribers, by dotted
path)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tecnorev.core import metrics
from tecnorev.core.db import create_db_engine
from tecnorev.core.events import Event, deliver, take_committed
from tecnorev.core.outbox.dispatch import Dispatcher, Retry
from tecnorev.core.registry import Registry, get_registry
from tecnorev.payments.reactions import refund_cancelled_order
from tecnorev.sales import service as sales
from tecnorev.testing.core import migrate

from .serving import (
    MANAGER,
    TECNOREV,
    _env,
    bearer,
    connections_of,
    demo_database,
    start_server,
    token,
)

CANCELLED = "sales.order_cancelled"
PAYMENTS_REFUND = "payments:tecnorev.payments.reactions:refund_cancelled_order"
QUICK = Retry(max_attempts=5, delay=0.01, cap=0.05)

# -- subscribers that fail on purpose ------------------------------------------------------------

FAILURES_LEFT = {"count": 0}
HANDLED: list[tuple[int, str]] = []
HANDLED_LOCK = threading.Lock()


def refund_after_failures(session: Session, event: Event) -> None:
    """payments' refund, behind a provider that is down for the first few attempts."""
    if FAILURES_LEFT["count"] > 0:
        FAILURES_LEFT["count"] -= 1
        raise ConnectionError("payment provider unreachable")
    refund_cancelled_order(session, event)


def refund_never(_session: Session, event: Event) -> None:
    raise RuntimeError(f"payment provider refuses order {event.payload['order_id']}")


def count_handled(session: Session, event: Event) -> None:
    """Slow enough that two dispatchers overlap; says which thread handled which order."""
    time.sleep(0.02)
    session.execute(
        sa.text("INSERT INTO handled (order_id, handler) VALUES (:o, :h)"),
        {"o": int(event.payload["order_id"]), "h": threading.current_thread().name},
    )


def with_refund(target: str) -> Registry:
    """The installed modules, payments subscribing ``target`` instead of its refund."""
    modules = [
        replace(m, subscribers=((CANCELLED, f"{__name__}:{target}"),))
        if m.name == "payments"
        else m
        for m in get_registry().modules
    ]
    return Registry.from_modules(modules)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def demo_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with the demo data (paid orders among them), on each backend."""
    if backend == "postgresql":
        with demo_database() as url:
            yield url
        return
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    migrate(url, "heads")
    subprocess.run(
        [TECNOREV, "demo", "load"], env=_env(url), check=True, capture_output=True, timeout=120
    )
    yield url


def paid_orders(engine: sa.Engine, limit: int = 1) -> list[int]:
    """Orders not cancelled yet that have succeeded payments."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text(
                    'SELECT DISTINCT o.id FROM "order" o JOIN payment p ON p.order_id = o.id'
                    " WHERE p.status = 'SUCCEEDED' AND o.status IN ('PENDING', 'CONFIRMED')"
                    " ORDER BY o.id LIMIT :n"
                ),
                {"n": limit},
            ).scalars()
        )


def payment_states(engine: sa.Engine, order_id: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.text("SELECT status FROM payment WHERE order_id = :o ORDER BY id"),
                {"o": order_id},
            ).scalars()
        )


def deliveries(engine: sa.Engine, subscriber: str | None = None) -> list[dict[str, Any]]:
    query = (
        "SELECT id, event, subscriber, status, attempts, last_error, payload FROM tecnorev_outbox"
    )
    params = {}
    if subscriber:
        query += " WHERE subscriber = :s"
        params["s"] = subscriber
    with engine.connect() as connection:
        rows = connection.execute(sa.text(query + " ORDER BY id"), params).mappings().all()
    return [
        {
            **row,
            "payload": row["payload"]
            if isinstance(row["payload"], dict)
            else json.loads(row["payload"]),
        }
        for row in rows
    ]


def outcome_count(subscriber: str, outcome: str) -> float:
    value = metrics.OUTBOX_DELIVERIES.labels(subscriber, outcome)._value.get()
    return float(value)


def cancel(engine: sa.Engine, order_id: int, registry: Registry) -> list[Event]:
    """Cancel as the service does: one unit of work; the committed events, undelivered."""
    with Session(engine) as session:
        session.info["tecnorev.registry"] = registry
        sales.cancel_order(session, order_id=order_id)
        session.commit()
        return take_committed(session)


# -- retries, dead letters ------------------------------------------------------------------------


def test_a_subscriber_failing_three_times_refunds_once_after_three_retries(demo_url):
    engine = create_db_engine(demo_url)
    registry = with_refund("refund_after_failures")
    subscriber = f"payments:{__name__}:refund_after_failures"
    FAILURES_LEFT["count"] = 3
    (order_id,) = paid_orders(engine)
    retries, delivered = outcome_count(subscriber, "retry"), outcome_count(subscriber, "delivered")

    events = cancel(engine, order_id, registry)
    deliver(events, engine=engine, registry=registry)  # right after the commit: fails
    assert payment_states(engine, order_id) and "REFUNDED" not in payment_states(engine, order_id)
    dispatcher = Dispatcher(engine, registry=registry, retry=QUICK)
    deadline = time.monotonic() + 30
    while "REFUNDED" not in payment_states(engine, order_id) and time.monotonic() < deadline:
        dispatcher.run_once()
        time.sleep(0.02)  # the backoff: due again in 10-50 ms

    assert set(payment_states(engine, order_id)) == {"REFUNDED"}
    (row,) = [r for r in deliveries(engine, subscriber) if r["payload"]["order_id"] == order_id]
    assert (row["status"], row["attempts"]) == ("delivered", 4)
    assert "ConnectionError: payment provider unreachable" in row["last_error"]
    assert outcome_count(subscriber, "retry") - retries == 3
    assert outcome_count(subscriber, "delivered") - delivered == 1
    # once delivered, nothing delivers it again
    assert dispatcher.run_once() == 0
    engine.dispose()


def test_a_subscriber_that_always_fails_ends_dead_listed_and_retried_by_command(demo_url):
    engine = create_db_engine(demo_url)
    subscriber = f"payments:{__name__}:refund_never"
    (order_id,) = paid_orders(engine)
    dead_before = outcome_count(subscriber, "dead")
    failing = with_refund("refund_never")

    deliver(cancel(engine, order_id, failing), engine=engine, registry=failing)
    dispatcher = Dispatcher(engine, registry=failing, retry=Retry(3, 0.01, 0.05))
    deadline = time.monotonic() + 30
    while (
        not [r for r in deliveries(engine, subscriber) if r["status"] == "dead"]
        and time.monotonic() < deadline
    ):
        dispatcher.run_once()
        time.sleep(0.02)
    (row,) = deliveries(engine, subscriber)
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert outcome_count(subscriber, "dead") - dead_before == 1
    assert dispatcher.run_once() == 0  # dead rows wait for a person
    assert "REFUNDED" not in payment_states(engine, order_id)

    env = _env(demo_url)
    listed = subprocess.run(
        [TECNOREV, "events", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    assert "dead 1" in listed.stdout
    (line,) = [
        line for line in listed.stdout.splitlines() if line.strip().startswith(str(row["id"]))
    ]
    assert "refund_never" in line and "attempts 3" in line
    assert f"RuntimeError: payment provider refuses order {order_id}" in line

    # the provider is fixed (payments' own refund again): retry it by command
    retried = subprocess.run(
        [TECNOREV, "events", "retry", str(row["id"])],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert retried.returncode == 0, retried.stderr
    assert f"1 delivery(ies) pending again: {row['id']}" in retried.stdout
    with engine.begin() as connection:  # the same row, now for the real refund
        connection.execute(
            sa.text("UPDATE tecnorev_outbox SET subscriber = :s WHERE id = :id"),
            {"s": PAYMENTS_REFUND, "id": row["id"]},
        )
    assert Dispatcher(engine, retry=QUICK).run_once() == 1
    assert set(payment_states(engine, order_id)) == {"REFUNDED"}
    again = subprocess.run(
        [TECNOREV, "events", "retry", str(row["id"])],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 1 and "not dead" in again.stderr
    engine.dispose()


# -- two dispatchers -------------------------------------------------------------------------------


def test_two_dispatchers_at_once_handle_each_delivery_once():
    with demo_database() as url:
        engine = create_db_engine(url, pool_size=10)
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TABLE handled (order_id int, handler text)")
        registry = with_refund("count_handled")
        orders = paid_orders(engine, limit=1000)
        with engine.connect() as connection:
            orders += list(
                connection.execute(
                    sa.text("SELECT id FROM \"order\" WHERE status = 'PENDING' ORDER BY id")
                ).scalars()
            )
        orders = sorted(set(orders))
        for order_id in orders:  # committed, not delivered: as after a crash
            cancel(engine, order_id, registry)
        assert len(orders) >= 10

        start = threading.Barrier(2, timeout=30)
        errors: list[BaseException] = []

        def dispatch() -> None:
            try:
                dispatcher = Dispatcher(engine, registry=registry, retry=QUICK, batch=5)
                start.wait()
                while dispatcher.run_once():
                    pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=dispatch, name=f"dispatcher-{i}") for i in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads) and not errors, errors

        with engine.connect() as connection:
            handled = connection.execute(sa.text("SELECT order_id, handler FROM handled")).all()
        assert sorted(order for order, _ in handled) == orders  # each once, none missed
        by = {handler for _, handler in handled}
        assert by == {"dispatcher-1", "dispatcher-2"}, by  # both took part
        rows = deliveries(engine, f"payments:{__name__}:count_handled")
        assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}
        engine.dispose()


# -- a crash between the commit and the delivery ---------------------------------------------------


def test_a_crash_after_a_cancel_commits_loses_no_refund_and_refunds_once(tmp_path):
    with demo_database() as url:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        (order_id,) = paid_orders(engine)
        settings = {"TECNOREV_REQUEST_LOCK_TIMEOUT": "60", "TECNOREV_LOG_FORMAT": "json"}
        server = start_server(url, 1, tmp_path, **settings)
        manager = bearer(token(server.base, MANAGER))

        # The refund will wait on this lock: the cancel commits, its delivery cannot.
        holder = engine.connect()
        holder.exec_driver_sql(
            f"SELECT id FROM payment WHERE order_id = {order_id} FOR UPDATE"
        ).all()
        answer: dict[str, Any] = {}

        def cancel_over_http() -> None:
            try:
                answer["response"] = httpx.post(
                    f"{server.base}/api/v1/sales/orders/{order_id}/cancel",
                    headers={**manager, "X-Request-ID": "cancel-before-crash"},
                    timeout=60,
                )
            except httpx.HTTPError as exc:
                answer["error"] = exc

        request = threading.Thread(target=cancel_over_http)
        request.start()
        deadline = time.monotonic() + 30
        while not connections_of(url, server.name, waiting_on_a_lock=True):
            assert time.monotonic() < deadline, server.output
            time.sleep(0.05)
        with engine.connect() as connection:
            status = connection.execute(
                sa.text('SELECT status FROM "order" WHERE id = :o'), {"o": order_id}
            ).scalar_one()
        assert status == "CANCELLED"  # committed before the delivery began

        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        holder.rollback()
        holder.close()
        request.join(timeout=60)
        assert not request.is_alive()
        # (the client may have had its 200: the refund is the reaction, delivered after the
        # commit, by the request itself or by the worker's dispatcher, woken by the commit)

        assert "REFUNDED" not in payment_states(engine, order_id)
        (pending,) = [
            r for r in deliveries(engine, PAYMENTS_REFUND) if r["payload"]["order_id"] == order_id
        ]
        assert (pending["status"], pending["attempts"]) == ("pending", 0)

        restarted = start_server(url, 1, tmp_path, **settings)
        try:
            deadline = time.monotonic() + 60
            while "REFUNDED" not in payment_states(engine, order_id):
                assert time.monotonic() < deadline, restarted.output
                time.sleep(0.1)
            scrape = httpx.get(restarted.base + "/metrics", timeout=30).text
        finally:
            restarted.stop()
        assert set(payment_states(engine, order_id)) == {"REFUNDED"}
        (row,) = [
            r for r in deliveries(engine, PAYMENTS_REFUND) if r["payload"]["order_id"] == order_id
        ]
        assert (row["status"], row["attempts"]) == ("delivered", 1)
        paid = len(payment_states(engine, order_id))  # a refund per payment, each once
        assert f"tecnorev_refunds_total {float(paid)}" in scrape
        assert (
            f'tecnorev_outbox_deliveries_total{{outcome="delivered",subscriber="{PAYMENTS_REFUND}"}} 1.0'
            in scrape
        )
        # the restarted worker's refund log line names the request that cancelled
        lines = [json.loads(line) for line in restarted.output.splitlines() if line.startswith("{")]
        refund_lines = [line for line in lines if "refunded payments" in line["message"]]
        assert [line["request_id"] for line in refund_lines] == ["cancel-before-crash"]
        engine.dispose()
