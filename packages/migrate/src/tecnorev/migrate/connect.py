"""Engines whose waits are bounded, and one-line errors for a database that cannot be reached."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tecnorev.migrate.errors import DatabaseUnavailable
from tecnorev.migrate.project import connect_timeout, project


def bounded_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """``sa.create_engine`` whose PostgreSQL connections give up opening after
    ``connect_timeout()`` (a ``connect_timeout`` in the URL's query wins)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", connect_timeout())
    return sa.create_engine(url, **kwargs)


def describe_url(url: str | sa.URL) -> str:
    """The URL with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _bound(url: str | sa.URL) -> str:
    given = make_url(url).query.get("connect_timeout")
    if given is not None:
        return f"connect_timeout={given} in DATABASE_URL"
    return f"{project().setting_name('DB_CONNECT_TIMEOUT')}={connect_timeout()}"


# libpq starts each failure with the host and port, which the URL in our message already names
_LIBPQ_WHERE = re.compile(r"^connection to server (?:at|on socket) .*? failed: ")


def unreachable(url: str | sa.URL, failure: BaseException | str) -> DatabaseUnavailable:
    """The error for a connection to ``url`` that could not be opened, in one line: the
    driver's reason, what to check and, on PostgreSQL, what bounded the wait."""
    if isinstance(failure, sa.exc.DBAPIError) and failure.orig is not None:
        failure = failure.orig
    lines = str(failure).strip().splitlines()
    reason = _LIBPQ_WHERE.sub("", lines[0].strip()) if lines else type(failure).__name__
    failed = f"cannot connect to the database at {describe_url(url)}: {reason}"
    if make_url(url).get_backend_name() != "postgresql":
        return DatabaseUnavailable(f"{failed}. Check DATABASE_URL (environment or .env).")
    return DatabaseUnavailable(
        f"{failed}. Check DATABASE_URL (environment or .env) and that the server answers; "
        f"{_bound(url)} bounds the wait."
    )


def check_connection(engine: sa.Engine) -> None:
    """Open and close one connection, turning driver errors into a message a person can act on."""
    try:
        with engine.connect():
            pass
    except sa.exc.OperationalError as exc:
        raise unreachable(engine.url, exc) from exc
