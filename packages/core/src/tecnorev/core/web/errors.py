"""Every error a client can see, mapped to HTTP in this one place.

The body is always ``{"error": {"code", "message", "details"}}``.  Database errors are
translated by kind (a unique or foreign-key violation is a 409, a value the column cannot
hold a 422, an unreachable database a 503); no SQL, traceback or input echo reaches a client.

Waiting too long is never a 500: a record locked by another request past the lock timeout is
``409 resource_busy``; a full process (no admission slot, no free connection) ``503
overloaded``; a statement past its timeout ``503 database_timeout``; an SQLite file locked
past its busy timeout ``503 database_busy``.  Each 503 and ``resource_busy`` carry
``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from tecnorev.core import metrics
from tecnorev.core.errors import DomainError

log = logging.getLogger("tecnorev.api")

# SQLSTATE classes (PostgreSQL) and message prefixes (SQLite) of constraint violations.
_PG_CONSTRAINT = {
    "23505": ("conflict", 409, "conflicts with an existing record"),
    "23503": ("conflict", 409, "refers to a record that does not exist or is still in use"),
    "23514": ("constraint_violation", 422, "breaks a rule of the stored data"),
    "23502": ("constraint_violation", 422, "leaves out a required value"),
    "23P01": ("conflict", 409, "overlaps an existing record"),
}
_SQLITE_CONSTRAINT = {
    "UNIQUE": _PG_CONSTRAINT["23505"],
    "FOREIGN KEY": _PG_CONSTRAINT["23503"],
    "CHECK": _PG_CONSTRAINT["23514"],
    "NOT NULL": _PG_CONSTRAINT["23502"],
}
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired
QUERY_CANCELED = "57014"  # statement_timeout expired (or the statement was cancelled)
# idle_in_transaction_session_timeout, admin shutdown, crash shutdown, cannot connect now
_SERVER_ENDED = {"25P03", "57P01", "57P02", "57P03"}
# SQLite primary result codes: busy/locked is contention; these mean the file cannot be used.
# Its other OperationalErrors (no such table, syntax) are faults in the code or its schema.
_SQLITE_BUSY = {5, 6}
_SQLITE_UNAVAILABLE = {8, 10, 11, 13, 14, 26}  # readonly, I/O, corrupt, full, cantopen, notadb


class ErrorDetail(BaseModel):
    code: str = Field(description="what went wrong, for programs: one of the codes the "
                      "operation documents for the status")  # fmt: skip
    message: str = Field(description="what went wrong, for people")
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="facts about the error, by name (always an object; empty when none); "
        "a request that is not valid lists its problems in `errors`",
    )


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# Documented on every route, so the OpenAPI document describes the body clients really get
# (FastAPI would otherwise advertise its own {"detail": ...} for a 422).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorResponse, "description": "refused: `error.code` says why"},
    "5XX": {"model": ErrorResponse, "description": "server or database unavailable"},
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    if details is None:
        details = {}
    elif not isinstance(details, dict):
        details = {"errors": details}  # always an object: one type for clients to read
    return {"error": {"code": code, "message": message, "details": details}}


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """The error body sent straight on an ASGI ``send``, for middleware that answers before
    the application runs."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _constraint(exc: sa.exc.IntegrityError) -> tuple[str, int, str, str | None]:
    orig = exc.orig
    pgcode = getattr(orig, "pgcode", None)
    if pgcode:
        code, status, message = _PG_CONSTRAINT.get(pgcode, _PG_CONSTRAINT["23514"])
        diag = getattr(orig, "diag", None)
        return code, status, message, getattr(diag, "constraint_name", None)
    text = str(orig)
    for prefix, found in _SQLITE_CONSTRAINT.items():
        if text.startswith(prefix):
            return (*found, None)
    return (*_PG_CONSTRAINT["23514"], None)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else exc.headers
    return error_response(exc.status_code, exc.code, exc.message, exc.details, headers)


def _login_first(request: Request) -> DomainError | None:
    """For a route demanding a login (a dependency carrying ``authenticate_early``, as auth's
    do), the refusal of a caller without a valid one: checked before their input is judged."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    pending = list(getattr(dependant, "dependencies", ()))
    while pending:
        dependency = pending.pop()
        check = getattr(dependency.call, "authenticate_early", None)
        if check is not None:
            try:
                check(request.headers.get("authorization"))
            except DomainError as refusal:
                return refusal
            return None
        pending.extend(dependency.dependencies)
    return None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    refusal = _login_first(request)
    if refusal is not None:
        return await _domain_error(request, refusal)
    errors = [
        {"loc": list(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return error_response(422, "validation_error", "the request is not valid", {"errors": errors})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(getattr(exc, "headers", None) or {})
    allowed = getattr(request.app.state, "allowed_methods", None)
    if status == 405 and allowed is not None:
        methods = allowed(request.url.path)
        if methods:
            headers["Allow"] = ", ".join(sorted(methods))
    codes = {
        401: "not_authenticated",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    code = codes.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(status, code, message, headers=headers or None)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa.exc.IntegrityError)
    code, status, message, constraint = _constraint(exc)
    details = {"constraint": constraint} if constraint else None
    return error_response(status, code, f"the request {message}", details)


async def _data_error(_request: Request, exc: Exception) -> JSONResponse:
    return error_response(
        422, "invalid_value", "a value is out of range or of the wrong kind for its field"
    )


async def _operational_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, sa.exc.OperationalError)
    pgcode = getattr(exc.orig, "pgcode", None)
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    sqlite_code = None if sqlite_code is None else sqlite_code & 0xFF
    if pgcode == LOCK_NOT_AVAILABLE:
        metrics.DATABASE_WAITS.labels("lock").inc()
        # One record is held by another request for longer than lock_timeout: a conflict on
        # that resource (409, as the other races), not a server fault.  Not 423, which
        # names a WebDAV lock the client could discover and own.
        return error_response(
            409,
            "resource_busy",
            "another request is changing this record; retry shortly",
            headers={"Retry-After": "1"},
        )
    if pgcode in _RETRY_SQLSTATES:
        return error_response(
            409, "concurrent_update", "the data changed concurrently; retry the request"
        )
    if pgcode == QUERY_CANCELED:
        metrics.DATABASE_WAITS.labels("statement").inc()
        log.warning("statement timeout on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            503,
            "database_timeout",
            "the database took too long to answer; retry later",
            headers={"Retry-After": "5"},
        )
    if sqlite_code in _SQLITE_BUSY:
        metrics.DATABASE_WAITS.labels("busy").inc()
        # The whole file is locked for writing, longer than the busy timeout: the server is
        # saturated, not one record contended.
        log.warning("database busy on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            503,
            "database_busy",
            "the database is busy with other writes; retry shortly",
            headers={"Retry-After": "1"},
        )
    if sqlite_code is not None and sqlite_code not in _SQLITE_UNAVAILABLE:
        return await _unexpected(request, exc)
    log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
    return error_response(
        503, "database_unavailable", "the database cannot be reached", headers={"Retry-After": "5"}
    )


async def _driver_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other driver error: a connection the server ended (idle in a transaction past its
    timeout, an administrator, a restart) is the database being unavailable, not a bug."""
    assert isinstance(exc, sa.exc.DBAPIError)
    if exc.connection_invalidated or getattr(exc.orig, "pgcode", None) in _SERVER_ENDED:
        log.error("connection lost on %s %s: %s", request.method, request.url.path, exc.orig)
        return error_response(
            503,
            "database_unavailable",
            "the database cannot be reached",
            headers={"Retry-After": "5"},
        )
    return await _unexpected(request, exc)


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    # Every connection of the process is in use for longer than the checkout may wait.
    metrics.DATABASE_WAITS.labels("pool").inc()
    log.warning("no free connection for %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503, "overloaded", "the server is busy; retry after the delay it gives",
        headers={"Retry-After": "1"},
    )  # fmt: skip


# What drivers raise, unwrapped, for a value they cannot send: a schema without bounds let it
# through, but it is still the client's value, not a server fault.
_DRIVER_VALUE_ERRORS = ("cannot contain NUL (0x00)", "too large to convert to SQLite")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ValueError | OverflowError) and any(
        marker in str(exc) for marker in _DRIVER_VALUE_ERRORS
    ):
        return await _data_error(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "an unexpected error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa.exc.IntegrityError, _integrity_error)
    app.add_exception_handler(sa.exc.DataError, _data_error)
    app.add_exception_handler(sa.exc.OperationalError, _operational_error)
    app.add_exception_handler(sa.exc.DBAPIError, _driver_error)
    app.add_exception_handler(sa.exc.TimeoutError, _pool_timeout)
    app.add_exception_handler(Exception, _unexpected)
