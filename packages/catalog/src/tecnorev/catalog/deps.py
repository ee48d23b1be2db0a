"""``OptionalUser``: the caller of a public route, or ``None`` when anonymous.

The catalogue is readable without logging in, but some of it (inactive products) only by
those who manage it.  The bearer token is read only when one is sent; a token that is sent
but invalid or expired is still a 401, so a client learns to refresh it rather than
silently seeing the anonymous view.  The caller is read on the public routes' reading
session (``ReadSessionDep``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.security import OAuth2PasswordBearer
from sqlmodel import Session

from tecnorev.auth.deps import TOKEN_URL, Principal, load_principal
from tecnorev.auth.security import decode_access_token
from tecnorev.core.web import ReadSessionDep

_optional_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def optional_user(
    session: ReadSessionDep, token: Annotated[str | None, Depends(_optional_bearer)]
) -> Principal | None:
    # async, so an anonymous request (the public listing's usual caller) costs no trip
    # through the thread pool; a token is checked against the database in a worker thread.
    if not token:
        return None
    return await run_in_threadpool(_load_principal, session, token)


def _load_principal(session: Session, token: str) -> Principal:
    claims = decode_access_token(token)
    return load_principal(session, claims.user_id, claims.family_id)


OptionalUser = Annotated[Principal | None, Depends(optional_user)]
