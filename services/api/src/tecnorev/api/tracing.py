"""OpenTelemetry traces, off unless ``TECNOREV_TRACING=1``.

A request's span comes from FastAPI's own telemetry, its SQL statements' spans from the
SQLAlchemy instrumentation, both on a tracer provider of the service's own (the global one is
left to whoever embeds the app).  Where the spans go is OpenTelemetry's standard settings:
``OTEL_TRACES_EXPORTER`` (``otlp``, the default, ``console`` or ``none``), the exporter's
``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``...  The pieces come
with ``pip install 'tecnorev-api[tracing]'``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from tecnorev.core.errors import ConfigError

if TYPE_CHECKING:
    import sqlalchemy as sa

log = logging.getLogger("tecnorev.api")

SERVICE_NAME = "tecnorev"


def tracer_provider(enabled: bool) -> Any:
    """A tracer provider exporting as the ``OTEL_*`` settings say, or ``None`` when off."""
    if not enabled:
        return None
    try:
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "TECNOREV_TRACING=1 needs OpenTelemetry's SDK: pip install 'tecnorev-api[tracing]'"
        ) from exc
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over this default name
    resource = Resource.create({"service.name": SERVICE_NAME}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER itself
    for exporter in _exporters(os.environ.get("OTEL_TRACES_EXPORTER", "otlp")):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporters(names: str) -> Iterable[Any]:
    for name in (n.strip().lower() for n in names.split(",") if n.strip()):
        if name == "none":
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            yield ConsoleSpanExporter()
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise ConfigError(
                    "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: "
                    "pip install 'tecnorev-api[tracing]'"
                ) from exc
            yield OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, ...
        else:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER={names!r}: this service exports to otlp, console or none"
            )


def trace_statements(provider: Any, engines: Iterable[sa.Engine]) -> None:
    """A span per SQL statement of these engines, inside the request's span.

    Written here on SQLAlchemy's cursor events rather than taken from
    opentelemetry-instrumentation-sqlalchemy: that one declares itself for SQLAlchemy < 2.1,
    imports SQLAlchemy's asyncio support (greenlet) and instruments once per process."""
    if provider is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    tracer = provider.get_tracer("tecnorev.sql")
    for engine in engines:
        url = engine.url
        attributes = {
            "db.system": engine.dialect.name,
            "db.system.name": engine.dialect.name,
            "db.namespace": url.database or "",
            "server.address": url.host or "",
        }

        def before(conn: Any, cursor: Any, statement: str, *_: Any, base: Any = attributes) -> None:
            operation = statement.lstrip().split(None, 1)[0].upper() if statement else "SQL"
            span = tracer.start_span(
                f"{operation} {base['db.namespace']}".strip(),
                kind=SpanKind.CLIENT,
                attributes={**base, "db.statement": statement, "db.query.text": statement},
            )
            conn.info.setdefault(_SPANS, []).append(span)

        def after(conn: Any, *_: Any) -> None:
            spans = conn.info.get(_SPANS)
            if spans:
                spans.pop().end()

        def failed(context: Any) -> None:
            spans = context.connection.info.get(_SPANS) if context.connection else None
            if spans:
                span = spans.pop()
                span.record_exception(context.original_exception)
                span.set_status(Status(StatusCode.ERROR, str(context.original_exception)))
                span.end()

        event.listen(engine, "before_cursor_execute", before)
        event.listen(engine, "after_cursor_execute", after)
        event.listen(engine, "handle_error", failed)


_SPANS = "tecnorev.sql_spans"


def fastapi_telemetry(provider: Any) -> dict[str, Any]:
    """FastAPI's own telemetry: spans on ``provider``; none of it when tracing is off."""
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False}
    # metrics stay Prometheus', and log lines stay the log's
    return {"tracer_provider": provider, "metrics": False, "logs": False}
