"""Databases on both backends, and settings read afresh for every test."""

from collections.abc import Iterator

import pytest

from tecnorev.core.settings import get_settings
from tecnorev.core.testing import backend, database_url, postgres_url  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch, tmp_path) -> Iterator[None]:
    """Development settings from this test's environment alone: no ``.env`` from the working
    directory, no production flag or key leaking in from the shell or another test."""
    monkeypatch.chdir(tmp_path)
    for name in ("TECNOREV_ENV", "SECRET_KEY", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
