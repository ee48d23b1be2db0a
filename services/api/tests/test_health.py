from importlib.metadata import version

from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.registry import get_registry


def test_health_answers_with_the_installed_modules_and_what_runs(database_url, monkeypatch):
    # The process is up: /health answers on a database nothing was migrated into.
    monkeypatch.setenv("TECNOREV_BUILD_ID", "git-4f2a9c1")
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["modules"] == get_registry().names
    assert body["build"] == "git-4f2a9c1"
    assert body["version"] == version("tecnorev-api")
    # every installed tecnorev distribution, with the version pip installed
    for module in get_registry().modules:
        assert body["distributions"][module.distribution] == version(module.distribution)
    assert body["distributions"]["tecnorev-api"] == version("tecnorev-api")
    assert body["platform"]["fastapi"] == version("fastapi")
    assert body["platform"]["sqlalchemy"] == version("sqlalchemy")


def test_health_answers_while_the_database_is_unreachable():
    app = create_app(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x")
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["build"] is None
