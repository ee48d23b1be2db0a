from datetime import UTC, datetime, timedelta

import pytest

from tecnorev.sales.models import Coupon

URL = "/api/v1/sales/coupons"


@pytest.fixture
def manager(shop):
    return shop.user("manager@example.com", roles=["manager"])[1]


def body(**overrides):
    return {"code": "spring10", "kind": "PERCENT", "value": "10", **overrides}


def test_a_coupon_is_created_with_an_upper_cased_code(shop, manager):
    response = shop.client.post(URL, json=body(usage_limit=3), headers=manager)
    assert response.status_code == 201, response.text
    coupon = response.json()
    assert coupon["code"] == "SPRING10"
    assert coupon["kind"] == "PERCENT"
    assert coupon["value"] == "10.00"
    assert coupon["times_used"] == 0
    assert coupon["usage_limit"] == 3
    assert coupon["is_active"] is True
    assert coupon["valid_until"] is None
    assert datetime.fromisoformat(coupon["valid_from"]) <= datetime.now(UTC)

    fetched = shop.client.get(f"{URL}/{coupon['id']}", headers=manager)
    assert fetched.status_code == 200
    assert fetched.json() == coupon


def test_a_code_is_taken_whatever_its_case(shop, manager):
    assert shop.client.post(URL, json=body(), headers=manager).status_code == 201
    response = shop.client.post(URL, json=body(code="Spring10", kind="FIXED"), headers=manager)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "coupon_code_taken"
    assert shop.count(Coupon) == 1


INVALID = [
    ({"kind": "PERCENT", "value": "0"}, "invalid_coupon_value"),
    ({"kind": "PERCENT", "value": "100.01"}, "invalid_coupon_value"),
    ({"kind": "FIXED", "value": "0.00"}, "invalid_coupon_value"),
    ({"kind": "FIXED", "value": "-5"}, "validation_error"),
    ({"value": "1.234"}, "validation_error"),
    ({"value": "1e20"}, "validation_error"),
    ({"value": "NaN"}, "validation_error"),
    ({"kind": "FREE"}, "validation_error"),
    ({"code": ""}, "validation_error"),
    ({"code": "A" * 41}, "validation_error"),
    ({"code": "TEN OFF"}, "validation_error"),
    ({"code": "TEN\x00"}, "validation_error"),
    ({"usage_limit": 0}, "validation_error"),
    ({"usage_limit": 2**31}, "validation_error"),
    ({"valid_from": "2030-01-01T00:00:00"}, "validation_error"),
    ({"times_used": 3}, "validation_error"),
    (
        {"valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
        "invalid_validity_window",
    ),
    (
        {"valid_from": "2030-01-01T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"},
        "invalid_validity_window",
    ),
]


def test_invalid_coupons_are_refused(shop, manager):
    for overrides, code in INVALID:
        response = shop.client.post(URL, json=body(**overrides), headers=manager)
        assert response.status_code == 422, (overrides, response.text)
        assert response.json()["error"]["code"] == code, overrides
    assert shop.count(Coupon) == 0


def test_a_full_percentage_and_a_window_are_accepted(shop, manager):
    response = shop.client.post(
        URL,
        json=body(
            value="100", valid_from="2030-01-01T00:00:00+02:00", valid_until="2030-02-01T00:00:00Z"
        ),
        headers=manager,
    )
    assert response.status_code == 201, response.text
    assert response.json()["valid_from"].startswith("2029-12-31T22:00:00")


def test_coupons_are_listed_a_page_at_a_time(shop, manager):
    for n in range(5):
        shop.client.post(URL, json=body(code=f"C{n}"), headers=manager)
    codes, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = shop.client.get(URL, params=params, headers=manager).json()
        codes += [c["code"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert codes == ["C0", "C1", "C2", "C3", "C4"]

    response = shop.client.get(URL, params={"cursor": "not-a-cursor"}, headers=manager)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_cursor"


def test_an_unknown_coupon_is_not_found(shop, manager):
    for method in ("get", "patch"):
        response = shop.client.request(method, f"{URL}/999", json={}, headers=manager)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "coupon_not_found"


def test_a_coupon_is_deactivated_and_its_limit_and_end_changed(shop, manager):
    coupon_id = shop.coupon("TEN", usage_limit=10, times_used=4)
    url = f"{URL}/{coupon_id}"
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()

    response = shop.client.patch(
        url, json={"is_active": False, "usage_limit": 4, "valid_until": until}, headers=manager
    )
    assert response.status_code == 200, response.text
    coupon = response.json()
    assert coupon["is_active"] is False
    assert coupon["usage_limit"] == 4
    assert datetime.fromisoformat(coupon["valid_until"]) == datetime.fromisoformat(until)

    # null lifts the limit and the end date; fields not sent stay as they are
    coupon = shop.client.patch(
        url, json={"usage_limit": None, "valid_until": None}, headers=manager
    ).json()
    assert (coupon["usage_limit"], coupon["valid_until"], coupon["is_active"]) == (
        None,
        None,
        False,
    )


def test_refused_changes_leave_the_coupon_as_it_was(shop, manager):
    coupon_id = shop.coupon("TEN", usage_limit=10, times_used=4)
    url = f"{URL}/{coupon_id}"
    before = shop.client.get(url, headers=manager).json()
    for change, code in [
        ({"usage_limit": 3}, "usage_limit_below_times_used"),
        ({"valid_until": "2000-01-01T00:00:00Z"}, "invalid_validity_window"),
        ({"usage_limit": 3, "is_active": False}, "usage_limit_below_times_used"),
        ({"valid_until": "2040-01-01T00:00:00"}, "validation_error"),
        ({"is_active": None}, "validation_error"),
        ({"usage_limit": 0}, "validation_error"),
        ({"times_used": 0}, "validation_error"),
        ({"code": "OTHER"}, "validation_error"),
    ]:
        response = shop.client.patch(url, json=change, headers=manager)
        assert response.status_code == 422, (change, response.text)
        assert response.json()["error"]["code"] == code, change
        assert shop.client.get(url, headers=manager).json() == before, change


def test_coupons_need_coupons_manage(shop):
    coupon_id = shop.coupon("TEN")
    _, customer = shop.user("c@example.com", roles=["customer"])
    _, clerk = shop.user("k@example.com", roles=["clerk"])
    for headers in (customer, clerk):
        for method, url in [
            ("post", URL),
            ("get", URL),
            ("get", f"{URL}/{coupon_id}"),
            ("patch", f"{URL}/{coupon_id}"),
        ]:
            response = shop.client.request(method, url, json=body(), headers=headers)
            assert response.status_code == 403, (method, url)
            assert response.json()["error"]["code"] == "permission_denied"
    response = shop.client.post(URL, json=body())
    assert response.status_code == 401
    assert shop.count(Coupon) == 1
