import pytest

from tecnorev.core.errors import ConfigError
from tecnorev.core.settings import DEFAULT_DATABASE_URL, load_settings, normalize_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
        ("  sqlite://  ", "sqlite://"),
    ],
)
def test_urls_are_normalised_to_the_installed_driver(given, expected):
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("localhost/db", "is not a database URL"),
        ("mysql://root@h/db", "supported databases are PostgreSQL"),
        ("postgresql+psycopg://u@h/db", "this installation uses psycopg2"),
        ("postgresql://", "is not a database URL"),
    ],
)
def test_bad_urls_are_explained(given, message):
    with pytest.raises(ConfigError, match=message):
        normalize_database_url(given)


def test_defaults_to_embedded_sqlite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("TECNOREV_ENV", raising=False)
    settings = load_settings()
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.environment == "development"
    assert not settings.is_production


def test_dotenv_is_found_from_the_working_directory(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://app@db.internal/shop\n")
    nested = tmp_path / "deploy" / "current"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    try:
        assert load_settings().database_url == "postgresql+psycopg2://app@db.internal/shop"
    finally:
        monkeypatch.delenv("DATABASE_URL", raising=False)


def test_environment_beats_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///from-file.db\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///from-env.db")
    assert load_settings().database_url == "sqlite:///from-env.db"


def test_unknown_environment_name_is_refused(monkeypatch):
    monkeypatch.setenv("TECNOREV_ENV", "staging")
    with pytest.raises(ConfigError, match="not one of development, production, test"):
        load_settings()


def test_a_dotenv_line_that_cannot_be_read_is_named_with_its_file(tmp_path, monkeypatch):
    from tecnorev.core.errors import ConfigError
    from tecnorev.core.settings import load_settings

    dotenv = tmp_path / ".env"
    dotenv.write_text("DATABASE_URL=sqlite:///x.db\nTECNOREV_ENV = 'production\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TECNOREV_ENV", raising=False)
    with pytest.raises(
        ConfigError, match=r"\.env, line 2: cannot read \"TECNOREV_ENV = 'production\""
    ):
        load_settings()
