from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.registry import get_registry


def test_health_answers_with_the_installed_modules(database_url):
    # The process is up: /health answers on a database nothing was migrated into.
    with TestClient(create_app(database_url=database_url)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "modules": get_registry().names}


def test_health_answers_while_the_database_is_unreachable():
    app = create_app(database_url="postgresql+psycopg2://postgres@127.0.0.1:1/x")
    with TestClient(app) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
