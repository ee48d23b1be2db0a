"""Every error a client can see goes through one mapping and has one shape:
``{"error": {"code", "message", "details"}}``, with no SQL, traceback or echoed input.

The routes here are tiny test routers on a table made with plain SQLAlchemy Core (its own
metadata, so nothing joins the modules' shared metadata), served by ``make_app`` as a
package's own tests would serve theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tecnorev.core.db import create_db_engine
from tecnorev.core.errors import (
    Conflict,
    DomainError,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
    RuleViolation,
)
from tecnorev.core.web import SessionDep, make_app
from tecnorev.core.web.types import INT4_MAX, IdPath, LimitQuery, Money, Quantity, text

BODY_LIMIT = 2_000

metadata = sa.MetaData()
shelf = sa.Table(
    "shelf",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
)
widget = sa.Table(
    "widget",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(20), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.Numeric(12, 2), nullable=True),
    sa.Column("shelf_id", sa.Integer, sa.ForeignKey("shelf.id"), nullable=True),
    sa.UniqueConstraint("code", name="uq_widget_code"),
    sa.CheckConstraint("quantity >= 0", name="ck_widget_quantity"),
)


class OutOfWidgets(Conflict):
    code = "out_of_widgets"


DOMAIN_ERRORS: dict[str, DomainError] = {
    "base": DomainError("the request makes no sense", details={"why": "base"}),
    "not_found": NotFound("no widget 7", details={"widget_id": 7}),
    "conflict": Conflict("widget W-1 exists"),
    "rule": RuleViolation("a widget needs a shelf", details={"fields": ["shelf_id"]}),
    "unauthenticated": NotAuthenticated("sign in first"),
    "forbidden": PermissionDenied("widgets:write is required"),
    "custom": OutOfWidgets("no widgets left", details={"left": 0}),
}


class WidgetIn(BaseModel):
    """A bounded request schema: what the table model would let through is refused here."""

    code: text(20, min_length=1)
    quantity: Quantity
    price: Money | None = None


router = APIRouter()


@router.post("/widgets", status_code=201)
def create_widget(payload: WidgetIn, session: SessionDep) -> dict[str, Any]:
    new_id = session.execute(
        sa.insert(widget).values(**payload.model_dump()).returning(widget.c.id)
    ).scalar_one()
    return {"id": new_id, **payload.model_dump(mode="json")}


@router.get("/widgets/{widget_id}")
def read_widget(widget_id: IdPath, session: SessionDep, limit: LimitQuery = 10) -> dict:
    row = session.execute(sa.select(widget).where(widget.c.id == widget_id)).mappings().first()
    if row is None:
        raise NotFound(f"no widget {widget_id}")
    return {"code": row["code"], "limit": limit}


@router.post("/raw/widgets", status_code=201)
def create_raw_widget(payload: dict[str, Any], session: SessionDep) -> dict[str, str]:
    """Unbounded on purpose: what reaches the database when a schema does not bound it."""
    session.execute(sa.insert(widget).values(**payload))
    return {"status": "stored"}


@router.post("/raw/shelves", status_code=201)
def create_raw_shelf(payload: dict[str, Any], session: SessionDep) -> dict[str, str]:
    session.execute(sa.insert(shelf).values(**payload))
    return {"status": "stored"}


@router.get("/refusals/{kind}")
def refuse(kind: str) -> None:
    raise DOMAIN_ERRORS[kind]


@router.get("/http-401")
def http_unauthorized() -> None:
    # What FastAPI's own security helpers (OAuth2PasswordBearer) raise.
    raise StarletteHTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


@router.get("/crash")
def crash() -> None:
    raise RuntimeError("SELECT password FROM users -- Traceback (most recent call last)")


@router.get("/missing-table")
def missing_table(session: SessionDep) -> None:
    session.execute(sa.text("SELECT secret_column FROM no_such_table"))


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    engine = create_db_engine(database_url)
    metadata.create_all(engine)
    app = make_app([("widgets", router)], engine=engine, max_body_bytes=BODY_LIMIT)
    try:
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client
    finally:
        engine.dispose()


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def assert_no_leak(response: Any, *fragments: str) -> None:
    lowered = response.text.lower()
    for fragment in ("traceback", "select ", "insert ", "sqlalchemy", "psycopg2", *fragments):
        assert fragment.lower() not in lowered, response.text


# -- domain errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("base", 400, "bad_request"),
        ("not_found", 404, "not_found"),
        ("conflict", 409, "conflict"),
        ("rule", 422, "rule_violation"),
        ("unauthenticated", 401, "not_authenticated"),
        ("forbidden", 403, "permission_denied"),
        ("custom", 409, "out_of_widgets"),
    ],
)
def test_a_domain_error_answers_its_status_code_message_and_details(client, kind, status, code):
    response = client.get(f"/api/v1/refusals/{kind}")
    assert response.status_code == status
    error = error_of(response)
    expected = DOMAIN_ERRORS[kind]
    details = expected.details if expected.details is not None else {}
    assert error == {"code": code, "message": expected.message, "details": details}
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    else:
        assert "www-authenticate" not in response.headers


def test_an_http_401_from_fastapi_security_keeps_its_challenge_header(client):
    response = client.get("/api/v1/http-401")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"


# -- request validation and routing ----------------------------------------------------------


def test_invalid_input_is_a_422_naming_each_field_without_echoing_the_input(client):
    response = client.post(
        "/api/v1/widgets",
        json={"code": "SECRET-" + "x" * 30, "quantity": "lots-SECRET-VALUE", "price": "pricey"},
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert {tuple(d["loc"]) for d in error["details"]["errors"]} == {
        ("body", "code"),
        ("body", "quantity"),
        ("body", "price"),
    }
    for detail in error["details"]["errors"]:
        assert set(detail) == {"loc", "message", "type"}
        assert detail["message"] and detail["type"]
    assert_no_leak(response, "SECRET", "pricey")


def test_a_body_that_is_not_json_is_a_422_without_echoing_it(client):
    response = client.post(
        "/api/v1/widgets",
        content=b'{"code": "SECRET-TOKEN", ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["type"] == "json_invalid"
    assert_no_leak(response, "SECRET-TOKEN")


def test_an_unknown_route_is_a_404_and_a_wrong_method_a_405_in_the_error_body(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"

    response = client.delete("/api/v1/widgets")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"


# -- database errors -------------------------------------------------------------------------


def test_a_unique_violation_is_a_409_naming_the_constraint_on_postgresql(client, backend):
    assert client.post("/api/v1/widgets", json={"code": "W-1", "quantity": 1}).status_code == 201
    response = client.post("/api/v1/widgets", json={"code": "W-1", "quantity": 2})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    if backend == "postgresql":
        assert error["details"] == {"constraint": "uq_widget_code"}
    assert_no_leak(response, "W-1", "Key (code)")


def test_a_foreign_key_violation_is_a_409(client):
    response = client.post(
        "/api/v1/raw/widgets", json={"code": "W-2", "quantity": 1, "shelf_id": 99}
    )
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    assert_no_leak(response, "99")


def test_a_check_violation_is_a_422(client):
    response = client.post("/api/v1/raw/widgets", json={"code": "W-3", "quantity": -5})
    assert response.status_code == 422
    assert error_of(response)["code"] == "constraint_violation"
    assert_no_leak(response, "-5")


def test_a_missing_required_value_is_a_422(client):
    response = client.post("/api/v1/raw/shelves", json={"name": None})
    assert response.status_code == 422
    assert error_of(response)["code"] == "constraint_violation"


@pytest.mark.parametrize(
    "values",
    [
        {"code": "W-" + "x" * 40, "quantity": 1},  # longer than VARCHAR(20)
        {"code": "W-4", "quantity": INT4_MAX + 1},  # past int4
        {"code": "W-5", "quantity": 1, "price": "12345678901.5"},  # past NUMERIC(12, 2)
    ],
    ids=["too-long", "int4-overflow", "numeric-overflow"],
)
def test_a_value_the_column_cannot_hold_is_a_422_on_postgresql(client, backend, values):
    if backend != "postgresql":
        pytest.skip("SQLite stores any value in any column: there is no DataError to map")
    response = client.post("/api/v1/raw/widgets", json=values)
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_value"
    assert_no_leak(response, "xxxxxxxx", str(INT4_MAX + 1), "12345678901")


@pytest.mark.parametrize(
    "values",
    [{"code": "W\x00-7", "quantity": 1}, {"code": "W-8", "quantity": 2**70}],
    ids=["nul-byte", "past-int64"],
)
def test_a_value_the_driver_refuses_is_a_422(client, backend, values):
    # psycopg2 refuses NUL with a bare ValueError; sqlite3 an oversize int with OverflowError
    # (PostgreSQL answers that one with a DataError).
    if backend == "sqlite" and "\x00" in values["code"]:
        pytest.skip("SQLite stores NUL characters")
    response = client.post("/api/v1/raw/widgets", json=values)
    assert response.status_code == 422
    assert error_of(response)["code"] == "invalid_value"


def test_an_unexpected_error_is_a_500_without_traceback_or_sql(client, caplog):
    response = client.get("/api/v1/crash")
    assert response.status_code == 500
    assert error_of(response) == {
        "code": "internal_error",
        "message": "an unexpected error occurred",
        "details": {},
    }
    assert_no_leak(response, "password", "RuntimeError")
    # The operator still gets the whole story in the log.
    assert "RuntimeError" in caplog.text and "/api/v1/crash" in caplog.text


def test_a_query_on_a_missing_table_is_a_500_not_an_unreachable_database(client):
    # On SQLite this is an OperationalError, the class connection failures share: it must not
    # send operators looking for a database outage.
    response = client.get("/api/v1/missing-table")
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert_no_leak(response, "no_such_table", "secret_column")


# -- body limit ------------------------------------------------------------------------------


def test_a_declared_oversize_body_is_refused_with_413_before_parsing(client):
    response = client.post(
        "/api/v1/widgets",
        content=b'{"code": "' + b"x" * BODY_LIMIT + b'"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_content_length_that_is_not_a_number_is_a_400(client):
    response = client.post(
        "/api/v1/widgets",
        content=b'{"code": "W-9", "quantity": 1}',
        headers={"content-type": "application/json", "content-length": "12abc"},
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


def test_a_chunked_oversize_body_is_refused_with_413(client):
    def chunks() -> Iterator[bytes]:
        yield b'{"code": "'
        for _ in range(4):
            yield b"x" * (BODY_LIMIT // 2)
        yield b'", "quantity": 1}'

    response = client.post(
        "/api/v1/widgets", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_chunked_body_within_the_limit_is_served(client):
    def chunks() -> Iterator[bytes]:
        yield b'{"code": "W-6", '
        yield b'"quantity": 3}'

    response = client.post(
        "/api/v1/widgets", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["code"] == "W-6"


# -- bounded request types -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"code": "W\x00-7", "quantity": 1}, "code"),
        ({"code": "W-8", "quantity": INT4_MAX + 1}, "quantity"),
        ({"code": "W-9", "quantity": 0}, "quantity"),
        ({"code": "W-10", "quantity": 1, "price": "12345678901.50"}, "price"),
        ({"code": "W-11", "quantity": 1, "price": "1.005"}, "price"),
        ({"code": "W-12", "quantity": 1, "price": "-1"}, "price"),
        ({"code": "W-13", "quantity": 1, "price": "NaN"}, "price"),
        ({"code": "W" * 1_500, "quantity": 1}, "code"),
        ({"code": "   ", "quantity": 1}, "code"),
    ],
    ids=[
        "nul",
        "int4-overflow",
        "zero-quantity",
        "decimal-overflow",
        "too-many-decimals",
        "negative-money",
        "nan",
        "huge-string",
        "blank",
    ],
)
def test_bounded_types_refuse_what_the_database_would_choke_on(client, values, field):
    response = client.post("/api/v1/widgets", json=values)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert [d["loc"] for d in error["details"]["errors"]] == [["body", field]]
    assert_no_leak(response, "W" * 20)


def test_bounded_types_admit_their_largest_values_and_the_columns_hold_them(client):
    largest = {"code": "W" * 20, "quantity": 1_000_000, "price": "9999999999.99"}
    response = client.post("/api/v1/widgets", json=largest)
    assert response.status_code == 201, response.text
    assert Decimal(response.json()["price"]) == Decimal("9999999999.99")
    response = client.get(f"/api/v1/widgets/{response.json()['id']}")
    assert response.status_code == 200
    assert response.json()["code"] == "W" * 20


@pytest.mark.parametrize(
    "url",
    [f"/api/v1/widgets/{INT4_MAX + 1}", "/api/v1/widgets/0", "/api/v1/widgets/1?limit=101"],
    ids=["id-past-int4", "id-zero", "limit-too-high"],
)
def test_bounded_path_and_query_parameters_are_a_422(client, url):
    response = client.get(url)
    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_error"


def test_an_id_within_int4_that_matches_nothing_is_a_404(client):
    response = client.get(f"/api/v1/widgets/{INT4_MAX}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_an_unreachable_database_is_a_503_with_retry_after(backend, tmp_path):
    url = {
        "sqlite": f"sqlite:///{tmp_path / 'no-such-folder' / 'shop.db'}",
        "postgresql": "postgresql+psycopg2://postgres@127.0.0.1:1/shop",
    }[backend]
    engine = create_db_engine(url)
    app = make_app([("widgets", router)], engine=engine)
    try:
        with TestClient(app, raise_server_exceptions=False) as unreachable:
            response = unreachable.get("/api/v1/widgets/1")
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert error_of(response)["code"] == "database_unavailable"
    assert response.headers["retry-after"] == "5"
    assert_no_leak(response, "127.0.0.1", "no-such-folder", "connection refused")
