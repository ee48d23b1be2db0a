"""What an operator gets from a real ``tecnorev serve``: JSON log lines carrying the client's
request id (through the reaction a request triggers), /metrics summed over two workers and read
with Prometheus' own parser, and /docs rendered by a real browser cut off from the network."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections import Counter
from typing import Any

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tecnorev.testing.core import metric, metric_samples, migrate

from .serving import (
    CUSTOMER,
    MANAGER,
    PASSWORD,
    bearer,
    demo_database,
    in_stock_product,
    place_order,
    start_server,
    token,
)


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be one JSON object."""
    lines = []
    for raw in output.splitlines():
        try:
            line = json.loads(raw)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line: {raw!r}\n{output}")
        assert isinstance(line, dict), raw
        lines.append(line)
    return lines


def paid_order(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        order_id = connection.execute(
            sa.text(
                'SELECT o.id FROM "order" o JOIN payment p ON p.order_id = o.id'
                " WHERE p.status = 'SUCCEEDED' AND o.status = 'CONFIRMED' ORDER BY o.id LIMIT 1"
            )
        ).scalar_one()
    engine.dispose()
    return order_id


def test_json_logs_carry_the_clients_request_id_through_a_request_and_its_reaction(tmp_path):
    with demo_database() as url:
        order_id = paid_order(url)
        server = start_server(url, 1, tmp_path, TECNOREV_LOG_FORMAT="json")
        try:
            manager = token(server.base, MANAGER)
            response = httpx.post(
                f"{server.base}/api/v1/sales/orders/{order_id}/cancel",
                headers={**bearer(manager), "X-Request-ID": "support-ticket-4711"},
                timeout=30,
            )
        finally:
            server.stop()
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "support-ticket-4711"

    lines = json_lines(server.output)
    for line in lines:
        assert {"timestamp", "level", "logger", "message"} <= set(line), line
        assert line["timestamp"].endswith("+00:00"), line  # UTC, ISO 8601
    mine = [line for line in lines if line.get("request_id") == "support-ticket-4711"]
    by_logger = {line["logger"]: line for line in mine}
    access = by_logger["tecnorev.access"]
    assert access["method"] == "POST"
    assert access["route"] == "/api/v1/sales/orders/{order_id}/cancel"
    assert access["path"] == f"/api/v1/sales/orders/{order_id}/cancel"
    assert access["status"] == 200
    assert access["duration_ms"] > 0
    assert isinstance(access["user_id"], int)
    # the refund payments ran after the commit logs under the same id
    assert (
        f"order {order_id} cancelled: refunded payments"
        in by_logger["tecnorev.payments"]["message"]
    )
    # the login before it was another request, with an id of its own
    logins = [line for line in lines if line.get("route") == "/api/v1/auth/token"]
    assert len(logins) == 1 and logins[0]["request_id"] != "support-ticket-4711"
    assert logins[0]["user_id"] is None


def test_metrics_of_two_workers_add_up_to_what_clients_saw(tmp_path):
    with demo_database() as url:
        product = in_stock_product(url)
        server = start_server(url, 2, tmp_path, TECNOREV_LOG_FORMAT="json")
        try:
            seen: Counter[str] = Counter()
            for _ in range(40):  # a connection each: the kernel spreads them over the workers
                assert httpx.get(server.base + "/api/v1/catalog/products", timeout=30).is_success
            customer = token(server.base, CUSTOMER)
            manager = token(server.base, MANAGER)
            orders = [place_order(server.base, customer, product) for _ in range(5)]
            for order_id in orders[:2]:
                cancelled = httpx.post(
                    f"{server.base}/api/v1/sales/orders/{order_id}/cancel",
                    headers=bearer(customer),
                    timeout=30,
                )
                assert cancelled.status_code == 200, cancelled.text
            total = httpx.get(
                f"{server.base}/api/v1/sales/orders/{orders[2]}",
                headers=bearer(manager),
                timeout=30,
            ).json()["total"]
            paid = httpx.post(
                f"{server.base}/api/v1/payments",
                headers=bearer(manager),
                json={
                    "order_id": orders[2],
                    "amount": total,
                    "currency": "USD",
                    "provider": "test",
                    "provider_reference": f"metrics-{orders[2]}",
                },
                timeout=30,
            )
            assert paid.status_code == 201, paid.text
            refunded = httpx.post(
                f"{server.base}/api/v1/sales/orders/{orders[2]}/cancel",
                headers=bearer(manager),
                timeout=30,
            )
            assert refunded.status_code == 200, refunded.text
            for _ in range(12):  # wrong passwords: refused, then throttled
                answer = httpx.post(
                    server.base + "/api/v1/auth/token",
                    data={"username": "bruno@example.com", "password": PASSWORD + "-wrong"},
                    timeout=30,
                )
                seen[str(answer.status_code)] += 1
            scrape = httpx.get(server.base + "/metrics", timeout=30)
        finally:
            server.stop()

    assert scrape.status_code == 200
    found = metric_samples(scrape.text)
    count = "tecnorev_http_request_duration_seconds_count"
    products = {"method": "GET", "route": "/api/v1/catalog/products", "status": "200"}
    assert metric(found, count, **products) == 40
    assert (
        metric(found, "tecnorev_http_request_duration_seconds_bucket", **products, le="+Inf") == 40
    )
    placed = {"method": "POST", "route": "/api/v1/sales/orders", "status": "201"}
    assert metric(found, count, **placed) == 5
    assert metric(found, "tecnorev_orders_placed_total") == 5
    assert metric(found, "tecnorev_orders_cancelled_total") == 3
    assert metric(found, "tecnorev_stock_movements_total", kind="sale") == 5
    assert metric(found, "tecnorev_stock_movements_total", kind="sale_cancelled") == 3
    assert metric(found, "tecnorev_payments_total", currency="USD") == 1
    assert metric(found, "tecnorev_refunds_total") == 1
    assert metric(found, "tecnorev_login_failures_total") == seen["401"] > 0
    assert metric(found, "tecnorev_logins_throttled_total") == seen["429"]
    assert seen["401"] + seen["429"] == 12
    refund = "payments:tecnorev.payments.reactions:refund_cancelled_order"
    assert (
        metric(found, "tecnorev_outbox_deliveries_total", subscriber=refund, outcome="delivered")
        == 3
    )
    assert metric(found, "tecnorev_outbox_backlog", status="pending") == 0
    assert metric(found, "tecnorev_db_pool_checked_out", pool="write") == 0
    assert metric(found, "tecnorev_migration_database_up") == 1
    assert metric(found, "tecnorev_migration_pending_revisions", module="sales") == 0
    # and the two workers both served: their access lines name two processes
    served_by = {
        line["pid"] for line in json_lines(server.output) if line["logger"] == "tecnorev.access"
    }
    assert len(served_by) == 2, served_by


def test_each_worker_reuses_its_callers_and_forgets_one_changed_by_hand(tmp_path):
    """A worker keeps the callers it read while it listens for changes to logins
    (``tecnorev.auth.callers``): /metrics shows both workers listening and the lookups it
    saved, and a user deactivated with SQL typed by hand is refused by the worker that kept
    it, long before the entry would expire."""
    with demo_database() as url:
        server = start_server(url, 2, tmp_path, TECNOREV_CALLER_CACHE_SECONDS="3600")
        try:

            def samples() -> Any:
                return metric_samples(httpx.get(server.base + "/metrics", timeout=30).text)

            deadline = time.monotonic() + 60
            while metric(samples(), "tecnorev_caller_cache_listening") != 2:
                assert time.monotonic() < deadline, "the workers never listened"
                time.sleep(0.1)
            manager = token(server.base, MANAGER)
            # one keep-alive connection: one worker serves every request
            with httpx.Client(base_url=server.base, headers=bearer(manager), timeout=30) as client:
                for _ in range(5):
                    assert client.get("/api/v1/auth/me").status_code == 200
                found = samples()
                assert metric(found, "tecnorev_caller_lookups_total", source="database") == 1
                assert metric(found, "tecnorev_caller_lookups_total", source="cache") == 4

                engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
                with engine.begin() as connection:
                    connection.execute(
                        sa.text('UPDATE "user" SET is_active = false WHERE email = :email'),
                        {"email": MANAGER},
                    )
                engine.dispose()
                deadline = time.monotonic() + 60
                while (answer := client.get("/api/v1/auth/me")).status_code == 200:
                    assert time.monotonic() < deadline, "the change was never heard"
                    time.sleep(0.05)
                assert answer.status_code == 401, answer.text
                assert "deactivated" in answer.json()["error"]["message"]
        finally:
            server.stop()


def test_metrics_on_a_port_of_their_own_sum_the_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    migrate(url, "heads")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    server = start_server(url, 2, tmp_path, TECNOREV_METRICS_PORT=str(metrics_port))
    try:
        for _ in range(30):
            assert httpx.get(server.base + "/api/v1/catalog/products", timeout=30).is_success
        on_the_api = httpx.get(server.base + "/metrics", timeout=30)
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
    finally:
        server.stop()
    assert on_the_api.status_code == 404
    assert scrape.status_code == 200
    found = metric_samples(scrape.text)
    products = {"method": "GET", "route": "/api/v1/catalog/products", "status": "200"}
    assert metric(found, "tecnorev_http_request_duration_seconds_count", **products) == 30
    assert metric(found, "tecnorev_migration_pending_revisions", module="catalog") == 0
    assert metric(found, "tecnorev_migration_database_up") == 1


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium: .ci/run installs Debian's chromium; apt-get install chromium")


def test_the_docs_render_in_a_browser_that_reaches_nothing_but_the_service(tmp_path):
    url = f"sqlite:///{tmp_path / 'docs.db'}"
    migrate(url, "heads")
    server = start_server(url, 1, tmp_path)
    browser = _chromium()
    profile = tmp_path / "profile"
    netlog = tmp_path / "netlog.json"
    offline = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        # every host but the service's is unknown, and anything else goes to a dead proxy
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
        "--proxy-bypass-list=127.0.0.1",
        "--no-first-run",
        "--disable-background-networking",
        # the browser's own clock check, not a request of the page
        "--disable-features=NetworkTimeServiceQuerying",
        "--disable-component-update",
        "--virtual-time-budget=15000",
        "--window-size=1280,1600",
    ]
    try:
        dom = subprocess.run(
            [*offline, f"--log-net-log={netlog}", "--dump-dom", server.base + "/docs"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        screenshot = tmp_path / "docs-offline.png"  # kept with pytest's last tmp folders
        shot = subprocess.run(
            [*offline, f"--screenshot={screenshot}", server.base + "/docs"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop()
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    # Swagger UI ran (from the service's own assets) and rendered the operations
    assert 'class="swagger-ui' in html, html[:2000]
    assert "opblock-summary-path" in html, html[:2000]
    assert "/api/v1/catalog/products" in html
    assert "/api/v1/sales/orders/{order_id}/cancel" in html
    # the page asked nothing of any other host (the browser's own update and clock checks,
    # which no page makes, were refused by the resolver rules all the same)
    requested = set(_page_requests(json.loads(netlog.read_text())))
    assert server.base + "/docs-assets/swagger-ui-bundle.js" in requested, requested
    assert server.base + "/openapi.json" in requested, requested
    elsewhere = {u for u in requested if not u.startswith(("http://127.0.0.1", "data:"))}
    assert not elsewhere, elsewhere
    assert shot.returncode == 0, shot.stderr
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one


def _page_requests(netlog: dict[str, Any]) -> list[str]:
    """URLs the pages asked for: requests whose initiator is a page's origin (the browser's
    own requests have none)."""
    return [
        params["url"]
        for event in netlog.get("events", [])
        if isinstance(params := event.get("params") or {}, dict)
        and isinstance(params.get("url"), str)
        and str(params.get("initiator", "")).startswith(("http://", "https://"))
    ]
