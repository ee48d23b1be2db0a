from fastapi.testclient import TestClient

from tecnorev.api import create_app
from tecnorev.core.registry import get_registry


def test_health_answers_with_the_installed_modules():
    client = TestClient(create_app())
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "modules": get_registry().names}
