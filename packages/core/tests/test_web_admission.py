"""Admission control: at most ``limit`` requests run at once, a short line waits a bounded
time, the rest is answered 503 at once; health paths never queue; the thread pool always
has a thread for every admitted request."""

from __future__ import annotations

import anyio
import anyio.to_thread
import httpx2 as httpx
import pytest
from fastapi import APIRouter

from tecnorev.core.errors import ConfigError
from tecnorev.core.web import make_app
from tecnorev.core.web.admission import Admission, AdmissionLimits

router = APIRouter()
gate: dict[str, anyio.Event] = {}


@router.get("/held")
async def held() -> dict[str, str]:
    await gate["open"].wait()
    return {"status": "done"}


def app_with(limits: AdmissionLimits):
    app = make_app([("test", router)], admission=limits)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def send_all(app, paths: list[str], *, release_after: float) -> list[httpx.Response]:
    gate["open"] = anyio.Event()
    transport = httpx.ASGITransport(app=app)
    responses: list[httpx.Response | None] = [None] * len(paths)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=10) as client:

        async def one(i: int, path: str) -> None:
            responses[i] = await client.get(path)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                for i, path in enumerate(paths):
                    tasks.start_soon(one, i, path)
                    await anyio.sleep(0.01)  # in this order
                await anyio.sleep(release_after)
                gate["open"].set()
    return [r for r in responses if r is not None]


def test_the_excess_waits_in_a_bounded_line_then_is_refused(caplog):
    app = app_with(AdmissionLimits(limit=2, backlog=1, wait=0.2))
    answers = anyio.run(lambda: send_all(app, ["/api/v1/held"] * 4, release_after=1.0))
    statuses = [r.status_code for r in answers]
    assert sorted(statuses) == [200, 200, 503, 503]
    for refused in (r for r in answers if r.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded"
        assert refused.headers["retry-after"] == "1"
    # one line for the storm, not one per refusal
    reports = [r for r in caplog.records if "overloaded: refused" in r.getMessage()]
    assert len(reports) == 1


def test_a_waiting_request_gets_the_next_free_slot():
    app = app_with(AdmissionLimits(limit=1, backlog=5, wait=5))
    answers = anyio.run(lambda: send_all(app, ["/api/v1/held"] * 3, release_after=0.2))
    assert [r.status_code for r in answers] == [200, 200, 200]


def test_health_is_answered_while_every_slot_is_taken():
    app = app_with(AdmissionLimits(limit=1, backlog=0, wait=0.1))
    paths = ["/api/v1/held", "/api/v1/held", "/health"]
    answers = anyio.run(lambda: send_all(app, paths, release_after=0.3))
    assert [r.status_code for r in answers] == [200, 503, 200]


def test_the_thread_pool_has_a_thread_for_every_admitted_request():
    app = app_with(AdmissionLimits(limit=64, backlog=0, wait=0.1))

    async def tokens_after_a_request() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/health-free-path")
        return anyio.to_thread.current_default_thread_limiter().total_tokens

    assert anyio.run(tokens_after_a_request) >= 64


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TECNOREV_MAX_IN_FLIGHT", "0"),
        ("TECNOREV_ADMISSION_BACKLOG", "lots"),
        ("TECNOREV_ADMISSION_WAIT", "-1s"),
        ("TECNOREV_ADMISSION_WAIT", "soon"),
    ],
)
def test_a_bad_admission_setting_names_itself(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        AdmissionLimits.from_env(40)


def test_admission_settings_default_to_the_pool(monkeypatch):
    for name in ("TECNOREV_MAX_IN_FLIGHT", "TECNOREV_ADMISSION_BACKLOG", "TECNOREV_ADMISSION_WAIT"):
        monkeypatch.delenv(name, raising=False)
    assert AdmissionLimits.from_env(32) == AdmissionLimits(limit=32, backlog=32, wait=1.0)
    monkeypatch.setenv("TECNOREV_ADMISSION_WAIT", "250ms")
    assert AdmissionLimits.from_env(32).wait == pytest.approx(0.25)


def test_a_body_sent_too_slowly_is_a_408_and_holds_no_place():
    reached: list[bytes] = []

    async def inner(scope, receive, send) -> None:
        message = await receive()
        reached.append(message["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    gatekeeper = Admission(inner, limits=AdmissionLimits(limit=1, backlog=0, body_timeout=0.2))

    def scope() -> dict:
        return {
            "type": "http",
            "method": "POST",
            "path": "/x",
            "headers": [(b"content-length", b"5")],
        }

    async def main() -> tuple[list[int], list[int]]:
        slow_statuses: list[int] = []
        fast_statuses: list[int] = []

        async def slow_receive() -> dict:
            await anyio.sleep(30)
            return {"type": "http.request", "body": b"hello"}

        async def fast_receive() -> dict:
            return {"type": "http.request", "body": b"hello"}

        def recorder(into: list[int]):
            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    into.append(message["status"])

            return send

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(gatekeeper, scope(), slow_receive, recorder(slow_statuses))
                await anyio.sleep(0.05)
                # the slow sender holds no place: a quick request is served meanwhile
                await gatekeeper(scope(), fast_receive, recorder(fast_statuses))
        return slow_statuses, fast_statuses

    slow, fast = anyio.run(main)
    assert slow == [408]
    assert fast == [200]
    assert reached == [b"hello"]  # the body reached the application whole, once
