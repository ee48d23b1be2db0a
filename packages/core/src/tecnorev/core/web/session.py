"""One unit of work per request.

The session is committed once, after the route returned and its response was rendered but
before a byte is sent (``scope="function"``): since FastAPI 0.118 the code after ``yield`` of a
request-scoped dependency runs after the response went out, so a commit there could fail while
the client already holds a 200.  Any error rolls everything back, except a domain error that
asks to keep its changes.  Events published on the session are delivered after the commit, to
the subscribers of the app's registry (``app.state.registry``; default: the installed modules).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlmodel import Session

from tecnorev.core.errors import DomainError
from tecnorev.core.events import deliver, take_committed


def request_engine(request: Request) -> sa.Engine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        from tecnorev.core.db import get_engine

        engine = request.app.state.engine = get_engine()
    return engine


def get_session(request: Request) -> Iterator[Session]:
    engine = request_engine(request)
    registry = getattr(request.app.state, "registry", None)
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
        except DomainError as exc:
            if not exc.keep_changes:
                session.rollback()
                raise
            session.commit()
            deliver(take_committed(session), engine=engine, registry=registry)
            raise
        except BaseException:
            session.rollback()
            raise
        session.commit()
    deliver(take_committed(session), engine=engine, registry=registry)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
