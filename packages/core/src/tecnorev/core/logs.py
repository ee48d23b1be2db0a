"""One logging configuration for the ``tecnorev`` command and the service.

Text lines on a terminal, JSON lines in production (``TECNOREV_LOG_FORMAT``); every line carries
a UTC timestamp, the level, the logger and, inside a request, the request's id (and its user,
once authenticated).

The standard library's ``logging`` stays the one API: uvicorn, SQLAlchemy, Alembic and our
modules all log through it, so one handler with one formatter covers them all.  JSON comes from
python-json-logger, a formatter for that handler (structlog would add a second logging API for
our code while the libraries kept the first).
"""

from __future__ import annotations

import itertools
import logging
import logging.config
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, Literal

LogFormat = Literal["auto", "text", "json"]
REQUEST_ID_HEADER = "x-request-id"
# What a client's X-Request-ID may be: long enough for a UUID, a trace id or a load
# balancer's id, short and plain enough to be logged and echoed as it is.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(request)s %(message)s"


@dataclass
class RequestContext:
    """What every log line of one request carries.  Mutable: a dependency running on a
    worker thread (a copy of the request's context) can still name the user."""

    request_id: str
    user_id: int | str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("tecnorev_request", default=None)


def current_request() -> RequestContext | None:
    return _current.get()


def request_id_from(raw: bytes | str | None) -> str:
    """The client's id when it is a plain bounded token, else a new one."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    if raw and _CLIENT_REQUEST_ID.fullmatch(raw):
        return raw
    return new_request_id()


class _Ids:
    """32 hex digits: a random prefix per process, then a counter.  Unique without a system
    call per request (``uuid4`` reads the kernel's random source each time: 2.5% of a worker's
    CPU under order load, profiled); ids need not be unguessable."""

    def __init__(self) -> None:
        self.pid = -1
        self.prefix = ""
        self.counter = itertools.count(1)

    def next(self) -> str:
        if self.pid != os.getpid():  # a forked worker starts a series of its own
            self.pid, self.prefix = os.getpid(), os.urandom(6).hex()
            self.counter = itertools.count(1)
        return f"{self.prefix}{next(self.counter):020x}"


new_request_id = _Ids().next


@contextmanager
def request_scope(request_id: str) -> Iterator[RequestContext]:
    context = RequestContext(request_id)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def enter_request(request_id: str) -> Token[RequestContext | None]:
    """``request_scope`` without a context manager, for the hot path (``leave_request``)."""
    return _current.set(RequestContext(request_id))


def leave_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def bind_user(user_id: int | str | None) -> None:
    """Name the authenticated user on the current request's log lines (and access line)."""
    context = _current.get()
    if context is not None:
        context.user_id = user_id


def _with_request(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        context = _current.get()
        record.request_id = context.request_id if context else None
        record.user_id = context.user_id if context else None
        return record

    make.tecnorev = True  # type: ignore[attr-defined]
    return make


def install_record_factory() -> None:
    """Every log record of the process carries ``request_id`` and ``user_id`` (``None``
    outside a request), whichever handler and format write it: a ``--log-config`` of the
    operator's own can name them too."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "tecnorev", False):
        logging.setLogRecordFactory(_with_request(current))


install_record_factory()


class RequestFields(logging.Filter):
    """``request``: `` [<request id> user=<id>]`` inside a request, for the text format."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None)
        user_id = getattr(record, "user_id", None)
        user = f" user={user_id}" if user_id is not None else ""
        record.request = f" [{request_id}{user}]" if request_id else ""
        return True


class TextFormatter(logging.Formatter):
    """``2026-12-06T07:00:00.123Z INFO    tecnorev.api [request id] message``; extra fields a
    line was given (the access line's) follow as ``key=value``."""

    converter = staticmethod(time.gmtime)
    _PLAIN = frozenset(logging.makeLogRecord({}).__dict__) | {
        "message", "asctime", "request", "request_id", "user_id", "color_message", "taskName",
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in self._PLAIN and value is not None
        ]
        return f"{line} {' '.join(extra)}" if extra else line


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
        timestamp=True,  # ISO 8601, UTC
        rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
        reserved_attrs=[*_RESERVED, "request", "color_message"],
    )


_RESERVED = [
    "args", "asctime", "created", "exc_info", "exc_text", "filename", "funcName", "levelno",
    "lineno", "module", "msecs", "msg", "pathname", "processName",
    "relativeCreated", "stack_info", "thread", "threadName", "taskName",
]  # fmt: skip


def resolved_format(fmt: LogFormat | None = None) -> Literal["text", "json"]:
    """``auto``: JSON in production, text elsewhere."""
    if fmt in ("text", "json"):
        return fmt
    from tecnorev.core.settings import get_settings

    settings = get_settings()
    chosen = fmt or settings.log_format
    if chosen == "auto":
        return "json" if settings.is_production else "text"
    return chosen


def logging_config(level: str = "info", fmt: LogFormat | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the process (also handed to uvicorn, which applies
    it in each worker): one handler on stderr, our formatter, uvicorn's own access log off
    (the service writes its own, with the route, duration and request id)."""
    formatter = (
        {"()": "tecnorev.core.logs.json_formatter"}
        if resolved_format(fmt) == "json"
        else {"()": "tecnorev.core.logs.TextFormatter"}
    )
    level = level.upper() if level.lower() != "trace" else "DEBUG"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "tecnorev.core.logs.RequestFields"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request"],
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "tecnorev": {"handlers": ["default"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["default"], "level": "WARNING"},
    }


def configure_logging(level: str = "info", fmt: LogFormat | None = None) -> None:
    logging.config.dictConfig(logging_config(level, fmt))
