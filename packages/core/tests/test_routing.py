"""``tecnorev.core.web.routing``: a route whose dependencies all come from the request alone
answers exactly as FastAPI's solving would, its closers run as the code after a ``yield``
does, and anything else is left to FastAPI; a ``Router`` turns away paths it cannot match."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pytest
import sqlalchemy as sa
from fastapi import Depends, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tecnorev.core.errors import RuleViolation
from tecnorev.core.listing import Listing, ListingQuery, columns_of, equals
from tecnorev.core.web import API_PREFIX, Route, Router, make_app
from tecnorev.core.web.types import BoolQuery, IdPath, IdQuery

table = sa.Table(
    "routing_thing",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False),
)


class Thing(BaseModel):
    id: int
    name: str


things = Listing(
    "routing_things",
    columns=columns_of(table, "id name owner_id is_active"),
    item=Thing,
    sorts=("id", "name"),
    default_sort="id",
    filters=(
        equals("owner_id", table.c.owner_id, IdQuery, "whose"),
        equals("is_active", table.c.is_active, BoolQuery, "on or off"),
    ),
)

events: list[str] = []


class Refused(RuleViolation):
    code = "refused"


async def tracked(request: Request) -> Any:  # FastAPI's form: a yield dependency
    events.append("open tracked")
    yield request.headers.get("x-who")
    events.append("close tracked")


def _tracked(request: Request) -> tuple[Any, Any]:
    events.append("open tracked")

    def close(error: BaseException | None) -> None:
        events.append(f"close tracked ({type(error).__name__ if error else 'ok'})")
        if request.headers.get("x-fail-closing"):
            raise RuntimeError("a closer failed")

    return request.headers.get("x-who"), close


tracked.from_request = _tracked  # type: ignore[attr-defined]


async def second(request: Request) -> str:
    return "second"


def _second(request: Request) -> tuple[str, Any]:
    events.append("open second")
    return "second", lambda error: events.append("close second")


second.from_request = _second  # type: ignore[attr-defined]


def plain_dependency() -> str:  # no request-only form: FastAPI solves the route
    return "plain"


router = Router(prefix="/things")


@router.get("")
async def list_things(
    who: Annotated[Any, Depends(tracked)],
    other: Annotated[str, Depends(second)],
    query: Annotated[ListingQuery, Depends(things.query)],
) -> Response:
    if query.filters.get("owner_id") == 13:
        raise Refused("owner 13 is refused")
    body = {"who": who, "other": other, "query": query.__dict__}
    return Response(_json(body))


@router.get("/plain")
async def with_plain(value: Annotated[str, Depends(plain_dependency)]) -> Response:
    return Response(_json({"value": value}))


@router.get("/sync")
def sync_route(who: Annotated[Any, Depends(tracked)]) -> dict[str, Any]:
    return {"who": who}


@router.get("/{thing_id}")
async def one_thing(thing_id: IdPath) -> Response:
    return Response(_json({"id": thing_id}))


@router.delete("/{thing_id}")
async def delete_thing(thing_id: IdPath) -> Response:
    return Response(status_code=204)


others = Router(prefix="/others")


@others.get("")
async def list_others(query: Annotated[ListingQuery, Depends(things.query)]) -> Response:
    return Response(_json({"sort": query.sort}))


def _json(value: Any) -> bytes:
    return json.dumps(value, default=str, sort_keys=True).encode()


@pytest.fixture
def client() -> Any:
    events.clear()
    app = make_app([("things", router), ("others", others)])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _routes(client: TestClient) -> dict[str, Route]:
    found = {}
    for route in (*router.routes, *others.routes):
        assert isinstance(route, Route)
        found[f"{sorted(route.methods)[0]} {route.path}"] = route
    return found


QUERIES: list[dict[str, Any]] = [
    {},
    {"limit": "3"},
    {"sort": "-name", "owner_id": "7", "is_active": "false"},
    {"limit": "0"},
    {"limit": "1.0"},
    {"limit": " 5"},
    {"limit": "x", "sort": "nonsense", "owner_id": "-1"},
    {"is_active": "maybe"},
    {"cursor": ""},
    {"cursor": "x" * 201},
    {"unknown": "1"},
    {"owner_id": "13"},
    {"owner_id": "007"},
    {"sort": "name", "limit": "100"},
]


def test_a_lean_route_answers_as_fastapi_solving_it_would(client):
    lean = [_answer(client, "/things", q) for q in QUERIES] + [
        _answer(client, "/others", {"sort": "-id"}),
        _answer(client, "/things", {"limit": "2"}, headers={"x-who": "ana"}),
        _answer(client, "/things?limit=2&limit=4", None),  # the last one counts
    ]
    routes = _routes(client)  # (their handlers are built at the app's first request)
    assert routes["GET /things"].lean and routes["GET /others"].lean
    # the lean path ran, in FastAPI's order: an unknown parameter is refused first
    assert events.count("open tracked") == len(QUERIES) + 2 - 1
    # any dependency override sends every request through FastAPI's own solving
    client.app.dependency_overrides[plain_dependency] = lambda: "overridden"
    solved = [_answer(client, "/things", q) for q in QUERIES] + [
        _answer(client, "/others", {"sort": "-id"}),
        _answer(client, "/things", {"limit": "2"}, headers={"x-who": "ana"}),
        _answer(client, "/things?limit=2&limit=4", None),
    ]
    assert lean == solved
    statuses = [status for status, _ in lean]
    assert statuses.count(200) == 7 and statuses.count(422) == 10, lean
    assert lean[0][1]["query"] == {"cursor": None, "filters": {}, "limit": 50, "sort": "id"}
    assert lean[2][1]["query"]["filters"] == {"is_active": False, "owner_id": 7}
    assert lean[-1][1]["query"]["limit"] == 4
    errors = lean[6][1]["error"]["details"]["errors"]
    assert [e["loc"] for e in errors] == [
        ["query", "limit"],
        ["query", "sort"],
        ["query", "owner_id"],
    ]


def _answer(
    client: TestClient,
    path: str,
    params: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    response = client.get(API_PREFIX + path, params=params, headers=headers)
    return response.status_code, response.json()


def test_closers_run_last_opened_first_and_learn_of_the_routes_error(client):
    assert client.get(API_PREFIX + "/things").status_code == 200
    assert events == ["open tracked", "open second", "close second", "close tracked (ok)"]
    events.clear()
    refused = client.get(API_PREFIX + "/things", params={"owner_id": "13"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "refused")
    assert events == ["open tracked", "open second", "close second", "close tracked (Refused)"]


def test_a_closer_failing_after_the_route_is_a_500_not_the_answer(client):
    failed = client.get(API_PREFIX + "/things", headers={"x-fail-closing": "1"})
    assert failed.status_code == 500
    assert "query" not in failed.text
    assert events[-1] == "close tracked (ok)"


def test_routes_that_need_fastapi_are_left_to_it(client):
    routes = _routes(client)
    # a dependency without a request-only form, a sync route, a path parameter
    assert not routes["GET /things/plain"].lean
    assert not routes["GET /things/sync"].lean
    assert not routes["GET /things/{thing_id}"].lean
    assert client.get(API_PREFIX + "/things/plain").json() == {"value": "plain"}
    sync = client.get(API_PREFIX + "/things/sync", headers={"x-who": "bo"})
    assert sync.json() == {"who": "bo"}
    assert events == ["open tracked", "close tracked"]  # FastAPI ran the yield dependency
    assert client.get(API_PREFIX + "/things/12").json() == {"id": 12}


def test_a_router_turns_away_only_the_paths_it_cannot_match(client):
    assert client.get(API_PREFIX + "/others", params={"sort": "name"}).json() == {"sort": "name"}
    assert client.get(API_PREFIX + "/nothing").status_code == 404
    assert client.get(API_PREFIX + "/things/12/more").status_code == 404
    wrong = client.post(API_PREFIX + "/things/12")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}
    assert client.delete(API_PREFIX + "/things/12").status_code == 204
    # under a root path (a proxy's prefix), too
    with TestClient(client.app, root_path="/shop") as behind:
        assert behind.get("/shop" + API_PREFIX + "/others").json() == {"sort": "id"}


def test_without_the_inclusions_dependencies_to_read_fastapi_solves_every_route(monkeypatch):
    # a FastAPI that does not say which dependencies an inclusion adds: none may be skipped
    from types import SimpleNamespace

    from tecnorev.core.web import routing

    monkeypatch.setattr(routing, "fastapi", SimpleNamespace(routing=SimpleNamespace()))
    events.clear()
    app = make_app([("things", router), ("others", others)])
    with TestClient(app) as client:  # handlers are built at the first request
        assert _answer(client, "/things", {"limit": "2"})[1]["query"]["limit"] == 2
        assert _answer(client, "/things", {"unknown": "1"})[0] == 422
        assert _answer(client, "/others", {"sort": "-id"})[1] == {"sort": "-id"}
    assert not any(route.lean for route in _routes_of(router, others))
    assert events == ["open tracked", "close tracked"]  # FastAPI's yield dependency ran


def _routes_of(*routers: Router) -> list[Route]:
    return [route for r in routers for route in r.routes if isinstance(route, Route)]
