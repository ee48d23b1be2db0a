"""The web layer every module's routes share: unit of work, error mapping, bounded types."""

from tecnorev.core.web.app import API_PREFIX, make_app
from tecnorev.core.web.errors import error_body, install_error_handlers
from tecnorev.core.web.session import ReadSessionDep, SessionDep, get_read_session, get_session

__all__ = [
    "API_PREFIX",
    "ReadSessionDep",
    "SessionDep",
    "error_body",
    "get_read_session",
    "get_session",
    "install_error_handlers",
    "make_app",
]
