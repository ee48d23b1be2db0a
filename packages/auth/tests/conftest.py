from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session

from tecnorev.auth.models import RefreshToken
from tecnorev.core.registry import discover
from tecnorev.testing.auth import PASSWORD, create_user
from tecnorev.testing.core import api_app, backend, database_url, migrate, postgres_url  # noqa: F401

AUTH = "/api/v1/auth"


class AuthApi:
    """The auth endpoints on one database, with the few steps every test repeats."""

    def __init__(self, client) -> None:
        self.client = client
        self.engine: sa.Engine = client.app.state.engine

    def user(self, email: str, *, roles=(), permissions=None, active: bool = True) -> int:
        with Session(self.engine) as session:
            user = create_user(session, email, roles=roles, permissions=permissions)
            user.is_active = active
            session.commit()
            return user.id

    def login(self, email: str, password: str = PASSWORD) -> dict:
        response = self.client.post(f"{AUTH}/token", data={"username": email, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def refresh(self, refresh_token: str):
        return self.client.post(f"{AUTH}/refresh", json={"refresh_token": refresh_token})

    def get(self, path: str, tokens: dict | None = None, **kwargs):
        return self.client.get(f"{AUTH}{path}", headers=bearer(tokens), **kwargs)

    def send(self, method: str, path: str, tokens: dict | None = None, **kwargs):
        return self.client.request(method, f"{AUTH}{path}", headers=bearer(tokens), **kwargs)

    def scalar(self, statement):
        with Session(self.engine) as session:
            return session.execute(statement).scalar()

    def count(self, table, *where) -> int:
        return self.scalar(sa.select(sa.func.count()).select_from(table).where(*where))

    @staticmethod
    def code(response) -> str:
        """The error code a client sees."""
        return response.json()["error"]["code"]

    def live_tokens(self, user_id: int) -> int:
        return self.count(
            RefreshToken, RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
        )


def bearer(tokens: dict | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"} if tokens else {}


@contextmanager
def auth_client(url: str) -> Iterator[TestClient]:
    """``core.testing.api_client``'s stack (error mapping, unit of work, body limit) serving
    only this module's router, on ``url`` migrated to ``auth@head``: auth's tests neither
    need nor break on the modules built on top of it."""
    migrate(url, "auth@head")
    app = api_app(url, discover(only=["auth"]))
    try:
        with TestClient(app) as client:
            yield client
    finally:
        app.state.engine.dispose()


@pytest.fixture
def api(database_url) -> Iterator[AuthApi]:  # noqa: F811
    with auth_client(database_url) as client:
        yield AuthApi(client)


@pytest.fixture
def postgres_api(postgres_url) -> Iterator[AuthApi]:  # noqa: F811
    """``api`` on PostgreSQL only."""
    with auth_client(postgres_url) as client:
        yield AuthApi(client)
