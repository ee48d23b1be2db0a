from tecnorev.testing.core import backend, database_url, postgres_url  # noqa: F401
