"""The web layer every module's routes share: unit of work, error mapping, bounded types."""

from tecnorev.core.web.app import API_PREFIX, make_app
from tecnorev.core.web.errors import error_body, install_error_handlers
from tecnorev.core.web.routing import Route, Router
from tecnorev.core.web.session import (
    Connectable,
    Reader,
    ReaderDep,
    ReadSessionDep,
    SessionDep,
    commit_rendered,
    get_read_session,
    get_session,
    run_read,
)

__all__ = [
    "API_PREFIX",
    "Connectable",
    "ReadSessionDep",
    "Reader",
    "ReaderDep",
    "Route",
    "Router",
    "SessionDep",
    "commit_rendered",
    "error_body",
    "get_read_session",
    "get_session",
    "install_error_handlers",
    "make_app",
    "run_read",
]
