from tecnorev.core.testing import backend, database_url, postgres_url  # noqa: F401
