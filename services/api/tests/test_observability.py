"""What an operator reads from one service process: request ids, access lines, /metrics (with
its token), and the docs pages served without a CDN."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.errors import ConfigError
from tecnorev.core.registry import get_registry
from tecnorev.testing.core import metric, metric_samples, migrate


@pytest.fixture
def migrated(database_url):
    migrate(database_url, "heads")
    return database_url


@pytest.mark.modules("catalog")
def test_metrics_count_requests_by_route_template_and_show_the_migration_state(migrated):
    with TestClient(create_app(database_url=migrated)) as client:
        before = metric_samples(client.get("/metrics").text)
        for product_id in (1, 2, 999_999):
            client.get(f"/api/v1/catalog/products/{product_id}")
        client.get("/nowhere")
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = metric_samples(response.text)
    count = "tecnorev_http_request_duration_seconds_count"
    route = {"method": "GET", "route": "/api/v1/catalog/products/{product_id}"}
    # one series per template and status, never one per id
    assert (
        metric(after, count, **route, status="404")
        - metric(before, count, missing=0, **route, status="404")
        == 3
    )
    assert not any("999999" in str(labels) for _, labels in after)
    assert metric(after, count, method="GET", route="<unrouted>", status="404") >= 1
    assert metric(after, "tecnorev_http_requests_in_flight") >= 1  # the scrape itself
    assert metric(after, "tecnorev_db_pool_size", pool="write") >= 1

    assert metric(after, "tecnorev_migration_database_up") == 1
    for module in get_registry().modules:
        assert metric(after, "tecnorev_migration_pending_revisions", module=module.name) == 0
        assert (
            metric(after, "tecnorev_migration_state_info", module=module.name, state="up to date")
            == 1
        )
    assert metric(after, "tecnorev_outbox_backlog", status="dead") == 0


def test_metrics_show_pending_revisions_of_a_database_behind(database_url):
    with TestClient(create_app(database_url=database_url)) as client:
        found = metric_samples(client.get("/metrics").text)
    core_revisions = metric(found, "tecnorev_migration_pending_revisions", module="core")
    assert core_revisions >= 1
    assert metric(found, "tecnorev_migration_state_info", module="core", state="pending") == 1


def test_metrics_answer_while_the_database_is_unreachable():
    app = create_app(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x")
    with TestClient(app) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert metric(metric_samples(response.text), "tecnorev_migration_database_up") == 0


def test_a_metrics_token_keeps_metrics_from_anyone_without_it(database_url, monkeypatch):
    monkeypatch.setenv("TECNOREV_METRICS_TOKEN", "scrape-8c1e2f-5d7a9b")
    with TestClient(create_app(database_url=database_url)) as client:
        anonymous = client.get("/metrics")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer scrape-0000-0000000"})
        odd = client.get("/metrics", headers={"Authorization": b"Bearer \xf1\xf1\xf1"})
        right = client.get("/metrics", headers={"Authorization": "Bearer scrape-8c1e2f-5d7a9b"})
    assert anonymous.status_code == wrong.status_code == odd.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "tecnorev_http" not in anonymous.text
    assert right.status_code == 200 and "tecnorev_http_request_duration_seconds" in right.text


def test_a_short_metrics_token_is_refused_with_its_name(database_url, monkeypatch):
    monkeypatch.setenv("TECNOREV_METRICS_TOKEN", "letmein")
    with pytest.raises(ConfigError, match=r"TECNOREV_METRICS_TOKEN.*at least 16 characters"):
        create_app(database_url=database_url)


def test_metrics_on_a_port_of_their_own_are_not_on_the_api(database_url, monkeypatch):
    monkeypatch.setenv("TECNOREV_METRICS_PORT", "9464")
    with TestClient(create_app(database_url=database_url)) as client:
        assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("checkout-7f3a", True),
        ("0af7651916cd43dd8448eb211c80319c", True),
        ("lb=edge-1/req:42@eu", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long
        ("two words", False),
        ("back\\slash", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_a_request_id_is_taken_when_plain_and_bounded_else_made(sent, kept, database_url, caplog):
    caplog.set_level(logging.INFO, logger="tecnorev.access")
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/nowhere", headers={"X-Request-ID": sent})
    echoed = response.headers["x-request-id"]
    if kept:
        assert echoed == sent
    else:
        assert echoed != sent and re.fullmatch(r"[0-9a-f]{32}", echoed)
    (line,) = [r for r in caplog.records if r.name == "tecnorev.access"]
    assert line.request_id == echoed
    assert (line.method, line.path, line.status, line.route) == (
        "GET",
        "/nowhere",
        404,
        "<unrouted>",
    )
    assert line.duration_ms >= 0


def test_probes_and_scrapes_write_no_access_line(database_url, caplog):
    caplog.set_level(logging.INFO, logger="tecnorev.access")
    with TestClient(create_app(database_url=database_url)) as client:
        for path in ("/health", "/ready", "/metrics", "/nowhere"):
            client.get(path)
    lines = [r for r in caplog.records if r.name == "tecnorev.access"]
    assert [line.path for line in lines] == ["/nowhere"]  # the one that is not a probe


def test_the_docs_pages_load_nothing_from_another_host(database_url):
    with TestClient(create_app(database_url=database_url)) as client:
        pages = {path: client.get(path) for path in ("/docs", "/redoc")}
        for path, page in pages.items():
            assert page.status_code == 200, path
            linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            linked += re.findall(r"url: '([^']+)'", page.text)
            assert linked, page.text
            for link in linked:
                assert link.startswith("/"), (path, link)
                assert client.get(link).status_code == 200, link
        bundle = client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert len(bundle.content) > 100_000


@pytest.mark.modules("catalog")
def test_a_traced_request_is_one_trace_with_its_sql_and_request_id(migrated, monkeypatch):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv("TECNOREV_TRACING", "1")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    exported = InMemorySpanExporter()
    app = create_app(database_url=migrated)
    app.state.tracer_provider.add_span_processor(SimpleSpanProcessor(exported))
    with TestClient(app) as client:
        response = client.get("/api/v1/catalog/products/1", headers={"X-Request-ID": "trace-me-1"})
        exported.clear()  # what start-up traced
        response = client.get(
            "/api/v1/catalog/products?limit=5", headers={"X-Request-ID": "trace-me-2"}
        )
    assert response.status_code == 200
    spans = exported.get_finished_spans()
    traces = {span.context.trace_id for span in spans}
    assert len(traces) == 1, [s.name for s in spans]  # one request, one trace
    (server,) = [s for s in spans if s.parent is None]
    assert server.name == "GET /api/v1/catalog/products"
    assert server.attributes["http.request_id"] == "trace-me-2"
    statements = [
        s for s in spans if "db.statement" in s.attributes or "db.query.text" in s.attributes
    ]
    assert statements, [s.name for s in spans]
    text = " ".join(
        str(s.attributes.get("db.statement") or s.attributes.get("db.query.text"))
        for s in statements
    )
    assert "FROM product" in text


def test_tracing_is_off_unless_asked(database_url):
    app = create_app(database_url=database_url)
    assert app.state.tracer_provider is None
