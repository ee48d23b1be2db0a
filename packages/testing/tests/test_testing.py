"""The helpers import with only what tecnorev-testing declares, and the fixtures are fixtures."""

import importlib.util

from tecnorev.testing import core


def test_the_core_helpers_need_no_domain_module():
    assert callable(core.migrate) and callable(core.run_together)
    for fixture in (core.backend, core.database_url, core.postgres_url):
        assert hasattr(fixture, "_fixture_function") or "fixture" in type(fixture).__name__.lower()


def test_run_together_returns_each_threads_result_in_order():
    assert core.run_together(3, lambda i, start: (start(), i)[1]) == [0, 1, 2]


def test_the_domain_helpers_are_separate_modules():
    # importing them needs tecnorev-auth / tecnorev-inventory, which this package does not declare
    for name in ("tecnorev.testing.auth", "tecnorev.testing.inventory"):
        assert importlib.util.find_spec(name) is not None
