"""Failed logins are throttled per account and per client address, before any hashing; the
number of passwords hashed at once is bounded."""

import threading

import pytest

from tecnorev.auth import security
from tecnorev.auth.throttle import LoginThrottle, ThrottleConfig
from tecnorev.core.errors import ConfigError, Overloaded
from tecnorev.testing.auth import PASSWORD

AUTH = "/api/v1/auth"


def log_in(api, email: str, password: str):
    return api.client.post(f"{AUTH}/token", data={"username": email, "password": password})


@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv("TECNOREV_LOGIN_FAILURES_PER_ACCOUNT", "3 per 15 minutes")
    monkeypatch.setenv("TECNOREV_LOGIN_FAILURES_PER_ADDRESS", "6 per 15 minutes")


def test_an_account_is_refused_after_its_failures_even_with_the_right_password(api, strict):
    api.user("target@example.com", roles=["clerk"])
    answers = [log_in(api, "target@example.com", "wrong-password").status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]

    refused = log_in(api, "target@example.com", PASSWORD)
    assert refused.status_code == 429
    assert api.code(refused) == "too_many_attempts"
    assert 1 <= int(refused.headers["retry-after"]) <= 15 * 60
    # another account from the same address is still let in
    api.user("other@example.com", roles=["clerk"])
    assert log_in(api, "other@example.com", PASSWORD).status_code == 200


def test_an_unknown_account_is_throttled_as_a_known_one(api, strict):
    answers = [log_in(api, "nobody@example.com", "whatever-it-is").status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]


def test_an_address_is_refused_after_its_failures_across_accounts(api, strict):
    api.user("victim@example.com", roles=["clerk"])
    for n in range(6):
        assert log_in(api, f"guess{n // 2}@example.com", "wrong-password").status_code == 401
    answer = log_in(api, "victim@example.com", PASSWORD)
    assert answer.status_code == 429
    assert api.code(answer) == "too_many_attempts"


def test_a_right_password_clears_the_account_failures(api, strict):
    api.user("forgetful@example.com", roles=["clerk"])
    for _ in range(2):
        assert log_in(api, "forgetful@example.com", "wrong-password").status_code == 401
    assert log_in(api, "forgetful@example.com", PASSWORD).status_code == 200
    for _ in range(2):
        assert log_in(api, "forgetful@example.com", "wrong-password").status_code == 401
    assert log_in(api, "forgetful@example.com", PASSWORD).status_code == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TECNOREV_LOGIN_FAILURES_PER_ACCOUNT", "ten"),
        ("TECNOREV_LOGIN_FAILURES_PER_ADDRESS", "5 per fortnight"),
        ("TECNOREV_RATE_LIMIT_STORAGE", "nosuch://x"),
    ],
)
def test_a_bad_throttle_setting_names_itself(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        LoginThrottle(ThrottleConfig.from_env())


def test_hashing_waits_for_a_slot_and_then_refuses(monkeypatch):
    monkeypatch.setenv("TECNOREV_PASSWORD_HASHES", "1")
    monkeypatch.setenv("TECNOREV_PASSWORD_HASH_WAIT", "200ms")
    security._hash_slots.cache_clear()
    try:
        slots, wait = security._hash_slots()
        assert wait == pytest.approx(0.2)
        hashed = security.hash_password(PASSWORD)
        assert slots.acquire(timeout=5)  # another login is hashing
        try:
            with pytest.raises(Overloaded) as refused:
                security.verify_password(PASSWORD, hashed)
            assert refused.value.status_code == 503
            assert refused.value.headers == {"Retry-After": "1"}
        finally:
            slots.release()
        assert security.verify_password(PASSWORD, hashed)[0]
    finally:
        security._hash_slots.cache_clear()


def test_no_more_hashes_run_at_once_than_the_slots(monkeypatch):
    monkeypatch.setenv("TECNOREV_PASSWORD_HASHES", "2")
    monkeypatch.setenv("TECNOREV_PASSWORD_HASH_WAIT", "60s")
    security._hash_slots.cache_clear()
    running = 0
    most = 0
    lock = threading.Lock()
    original = security._hasher().hash

    def counted(password: str) -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return original(password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(security._hasher(), "hash", counted)
    try:
        threads = [threading.Thread(target=security.hash_password, args=("pw",)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert most == 2
    finally:
        security._hash_slots.cache_clear()
