"""Databases on both backends, settings read afresh for every test, and a marker for tests
that need particular modules installed (the api package is also tested alone, with only
tecnorev-core beside it)."""

from collections.abc import Iterator

import pytest

from tecnorev.core.registry import get_registry
from tecnorev.core.settings import get_settings
from tecnorev.testing.core import backend, database_url, postgres_url  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "modules(*names): skip unless these tecnorev modules are installed"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("modules"):
        missing = [name for name in marker.args if name not in get_registry()]
        if missing:
            pytest.skip(f"needs the {', '.join(missing)} module(s) installed")


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
