from dataclasses import dataclass

import pytest
from sqlmodel import Session

from tecnorev.core.events import take_committed
from tecnorev.inventory.models import MovementReason
from tecnorev.sales import service
from tecnorev.sales.errors import InvalidTransition, OrderNotFound
from tecnorev.sales.models import Order, OrderStatus
from tecnorev.testing.core import api_client

ORDERS = "/api/v1/sales/orders"
S = OrderStatus


@dataclass
class World:
    shop: object
    branch: int
    lamp: int
    customer_id: int
    customer: dict
    manager: dict

    def place(self, quantity=1, *, coupon=None, headers=None, branch=None):
        payload = {
            "branch_id": branch or self.branch,
            "items": [{"product_id": self.lamp, "quantity": quantity}],
        }
        if coupon:
            payload["coupon_code"] = coupon
        response = self.shop.client.post(ORDERS, json=payload, headers=headers or self.customer)
        assert response.status_code == 201, response.text
        return response.json()

    def post(self, order_id, action, headers):
        return self.shop.client.post(f"{ORDERS}/{order_id}/{action}", headers=headers)

    def status(self, order_id):
        with Session(self.shop.engine) as session:
            return session.get(Order, order_id).status


@pytest.fixture
def world(shop):
    branch = shop.branch()
    lamp = shop.product("LAMP", "19.90")
    shop.receive(branch, lamp, 10)
    customer_id, customer = shop.user("customer@example.com", roles=["customer"])
    _, manager = shop.user("manager@example.com", roles=["manager"])
    return World(shop, branch, lamp, customer_id, customer, manager)


def assert_refused(response, status, code):
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    return response.json()["error"]


# --- the state machine, at the service --------------------------------------------------------

ACTIONS = {
    "confirm": (service.confirm_order, S.CONFIRMED),
    "ship": (service.mark_shipped, S.SHIPPED),
    "deliver": (service.mark_delivered, S.DELIVERED),
    "cancel": (service.cancel_order, S.CANCELLED),
}
ALLOWED = {
    (S.PENDING, "confirm"),
    (S.PENDING, "cancel"),
    (S.CONFIRMED, "ship"),
    (S.CONFIRMED, "cancel"),
    (S.SHIPPED, "deliver"),
}


def test_every_status_change_follows_the_state_machine(world):
    order_id = world.place()["id"]
    for start in S:
        for action, (change, target) in ACTIONS.items():
            with Session(world.shop.engine) as session:
                session.get(Order, order_id).status = start
                session.commit()
            with Session(world.shop.engine) as session:
                if (start, action) in ALLOWED:
                    assert change(session, order_id=order_id).status is target
                    session.rollback()
                else:
                    with pytest.raises(InvalidTransition) as refused:
                        change(session, order_id=order_id)
                    assert refused.value.details == {"from": start.value, "to": target.value}
                    session.rollback()
            assert world.status(order_id) is start


def test_an_order_goes_all_the_way_to_delivered(world):
    order_id = world.place()["id"]
    with Session(world.shop.engine) as session:
        confirmed = service.confirm_order(session, order_id=order_id)
        assert confirmed.confirmed_at is not None
        service.mark_shipped(session, order_id=order_id)
        service.mark_delivered(session, order_id=order_id)
        session.commit()
        events = take_committed(session)
    assert world.status(order_id) is S.DELIVERED
    assert [(e.name, dict(e.payload)) for e in events] == [
        (
            "sales.order_confirmed",
            {"order_id": order_id, "total": "19.90", "customer_id": world.customer_id},
        )
    ]


def test_an_unknown_order_cannot_change(world):
    with Session(world.shop.engine) as session:
        for change, _ in ACTIONS.values():
            with pytest.raises(OrderNotFound):
                change(session, order_id=999)


# --- confirming and cancelling through the API ------------------------------------------------


def test_staff_confirm_a_pending_order_once(world):
    order_id = world.place()["id"]
    response = world.post(order_id, "confirm", world.manager)
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["status"] == "CONFIRMED"
    assert order["confirmed_at"] is not None
    assert order["items"][0]["product_id"] == world.lamp

    error = assert_refused(
        world.post(order_id, "confirm", world.manager), 409, "invalid_transition"
    )
    assert error["details"] == {"from": "CONFIRMED", "to": "CONFIRMED"}
    assert_refused(world.post(999, "confirm", world.manager), 404, "order_not_found")


def test_a_customer_cannot_confirm(world):
    order_id = world.place()["id"]
    assert_refused(world.post(order_id, "confirm", world.customer), 403, "permission_denied")
    assert_refused(world.post(order_id, "confirm", {}), 401, "not_authenticated")
    assert world.status(order_id) is S.PENDING


def test_cancelling_gives_back_the_stock_and_the_coupon_use(world):
    coupon_id = world.shop.coupon("SAVE", usage_limit=1)
    order = world.place(3, coupon="SAVE")
    assert world.post(order["id"], "confirm", world.manager).status_code == 200
    assert world.shop.stock(world.branch, world.lamp) == 7
    assert world.shop.times_used(coupon_id) == 1

    response = world.post(order["id"], "cancel", world.manager)
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["cancelled_at"] is not None
    assert world.shop.stock(world.branch, world.lamp) == 10
    assert world.shop.ledger(world.branch, world.lamp)[-1] == (
        3,
        MovementReason.SALE_CANCELLED,
        f"order:{order['id']}",
    )
    assert world.shop.times_used(coupon_id) == 0
    # the coupon's single use is free again
    world.place(1, coupon="SAVE")

    assert_refused(world.post(order["id"], "cancel", world.manager), 409, "invalid_transition")
    assert world.shop.stock(world.branch, world.lamp) == 9


def test_cancelling_publishes_the_event_payments_refund_on(world):
    order = world.place(2)
    with Session(world.shop.engine) as session:
        service.cancel_order(session, order_id=order["id"])
        session.commit()
        events = take_committed(session)
    assert [(e.name, dict(e.payload)) for e in events] == [
        (
            "sales.order_cancelled",
            {"order_id": order["id"], "total": "39.80", "customer_id": world.customer_id},
        )
    ]


def test_a_refused_change_publishes_nothing(world):
    order = world.place()
    with Session(world.shop.engine) as session:
        service.cancel_order(session, order_id=order["id"])
        with pytest.raises(InvalidTransition):
            service.cancel_order(session, order_id=order["id"])
        session.rollback()
        assert take_committed(session) == []


def test_a_customer_cancels_their_own_pending_order(world):
    order = world.place(2)
    response = world.post(order["id"], "cancel", world.customer)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "CANCELLED"
    assert world.shop.stock(world.branch, world.lamp) == 10


def test_a_customer_cannot_cancel_a_confirmed_order(world):
    order = world.place(2)
    world.post(order["id"], "confirm", world.manager)
    assert_refused(world.post(order["id"], "cancel", world.customer), 403, "permission_denied")
    assert world.status(order["id"]) is S.CONFIRMED
    assert world.shop.stock(world.branch, world.lamp) == 8


def test_a_customer_cannot_cancel_someone_elses_order(world):
    order = world.place(2)
    _, stranger = world.shop.user("stranger@example.com", roles=["customer"])
    assert_refused(world.post(order["id"], "cancel", stranger), 404, "order_not_found")
    assert_refused(world.post(order["id"], "cancel", {}), 401, "not_authenticated")
    _, no_place = world.shop.user("m@example.com", permissions=["orders:manage"])
    assert_refused(world.post(order["id"], "cancel", no_place), 403, "permission_denied")
    assert world.status(order["id"]) is S.PENDING
    assert world.shop.stock(world.branch, world.lamp) == 8


def test_an_order_of_a_branch_closed_since_is_still_cancelled(world):
    order = world.place(2)
    from tecnorev.inventory.models import Branch

    with Session(world.shop.engine) as session:
        session.get(Branch, world.branch).is_active = False
        session.commit()
    assert world.post(order["id"], "cancel", world.manager).status_code == 200
    assert world.shop.stock(world.branch, world.lamp) == 10


# --- reading -----------------------------------------------------------------------------------


def test_customers_see_only_their_own_orders(world):
    _, other = world.shop.user("other@example.com", roles=["customer"])
    mine = world.place()["id"]
    theirs = world.place(headers=other)["id"]

    listed = world.shop.client.get(ORDERS, headers=world.customer).json()
    assert [o["id"] for o in listed["items"]] == [mine]
    assert world.shop.client.get(f"{ORDERS}/{mine}", headers=world.customer).status_code == 200
    response = world.shop.client.get(f"{ORDERS}/{theirs}", headers=world.customer)
    assert_refused(response, 404, "order_not_found")
    assert_refused(world.shop.client.get(ORDERS), 401, "not_authenticated")


def test_read_all_sees_every_order(world):
    _, auditor = world.shop.user("auditor@example.com", permissions=["orders:read_all"])
    ids = [world.place()["id"], world.place(headers=world.manager)["id"]]
    listed = world.shop.client.get(ORDERS, headers=auditor).json()
    assert sorted(o["id"] for o in listed["items"]) == sorted(ids)
    for order_id in ids:
        assert world.shop.client.get(f"{ORDERS}/{order_id}", headers=auditor).status_code == 200


def test_branch_staff_see_their_branches_orders(world):
    north = world.shop.branch("NTH")
    world.shop.receive(north, world.lamp, 5)
    here = world.place()["id"]
    there = world.place(branch=north)["id"]
    staff_id, staff = world.shop.user("staff@example.com", permissions=["orders:manage"])
    world.shop.assign(north, staff_id)

    listed = world.shop.client.get(ORDERS, headers=staff).json()
    assert [o["id"] for o in listed["items"]] == [there]
    assert world.shop.client.get(f"{ORDERS}/{there}", headers=staff).status_code == 200
    response = world.shop.client.get(f"{ORDERS}/{here}", headers=staff)
    assert_refused(response, 404, "order_not_found")


def test_the_seeded_clerk_sees_only_its_branches_orders(world):
    """The ``clerk`` role as the auth migrations seed it (no ``orders:read_all``): a clerk
    reads the orders of the branches it is staff of, and nothing else; a manager reads all."""
    north = world.shop.branch("NTH")
    world.shop.receive(north, world.lamp, 5)
    here = world.place()["id"]
    there = world.place(branch=north)["id"]
    clerk_id, clerk = world.shop.user("clerk@example.com", roles=["clerk"])
    _, idle = world.shop.user("idle.clerk@example.com", roles=["clerk"])
    world.shop.assign(north, clerk_id)

    listed = world.shop.client.get(ORDERS, headers=clerk).json()
    assert [o["id"] for o in listed["items"]] == [there]
    assert world.shop.client.get(f"{ORDERS}/{there}", headers=clerk).status_code == 200
    assert_refused(world.shop.client.get(f"{ORDERS}/{here}", headers=clerk), 404, "order_not_found")

    # a clerk assigned to no branch sees no order at all
    assert world.shop.client.get(ORDERS, headers=idle).json()["items"] == []
    assert_refused(world.shop.client.get(f"{ORDERS}/{there}", headers=idle), 404, "order_not_found")

    listed = world.shop.client.get(ORDERS, headers=world.manager).json()
    assert sorted(o["id"] for o in listed["items"]) == sorted([here, there])

    # and acts on what it reads only: another branch's order is not found, and unchanged
    for action in ("confirm", "cancel"):
        assert_refused(world.post(here, action, clerk), 404, "order_not_found")
    assert world.status(here) is OrderStatus.PENDING
    assert world.post(there, "confirm", clerk).status_code == 200
    assert world.post(there, "cancel", clerk).status_code == 200
    assert world.status(there) is OrderStatus.CANCELLED


def test_staff_act_on_their_own_order_elsewhere_as_customers_do(world):
    """A clerk's own order at a branch it is not staff of: it reads it (its own), confirming
    it is a 403 (it exists for the clerk), and it cancels it only while PENDING, as any
    customer does."""
    north = world.shop.branch("NTH")
    world.shop.receive(north, world.lamp, 5)
    clerk_id, clerk = world.shop.user("clerk@example.com", roles=["clerk"])
    world.shop.assign(world.branch, clerk_id)
    at_its_branch = world.place(headers=clerk)["id"]
    assert world.post(at_its_branch, "confirm", clerk).status_code == 200
    pending, confirmed = (world.place(headers=clerk, branch=north)["id"] for _ in range(2))
    assert world.post(confirmed, "confirm", world.manager).status_code == 200

    assert world.shop.client.get(f"{ORDERS}/{pending}", headers=clerk).status_code == 200
    assert_refused(world.post(pending, "confirm", clerk), 403, "permission_denied")
    assert_refused(world.post(confirmed, "cancel", clerk), 403, "permission_denied")
    assert (world.status(pending), world.status(confirmed)) == (S.PENDING, S.CONFIRMED)
    assert world.post(pending, "cancel", clerk).status_code == 200
    assert world.status(pending) is S.CANCELLED


def test_orders_are_listed_newest_first_a_page_at_a_time(world):
    ids = [world.place()["id"] for _ in range(5)]
    world.post(ids[1], "confirm", world.manager)
    world.post(ids[3], "confirm", world.manager)

    def walk(**params):
        seen, cursor = [], None
        while True:
            query = {"limit": 2, **params} | ({"cursor": cursor} if cursor else {})
            response = world.shop.client.get(ORDERS, params=query, headers=world.customer)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["items"]) <= 2
            seen += [o["id"] for o in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                return seen

    assert walk() == ids[::-1]
    assert walk(status="CONFIRMED") == [ids[3], ids[1]]
    assert walk(status="PENDING") == [ids[4], ids[2], ids[0]]
    page = world.shop.client.get(ORDERS, params={"limit": 1}, headers=world.customer).json()
    assert page["items"][0]["items"][0]["quantity"] == 1


def test_bad_list_parameters_and_ids_are_refused(world):
    for params, code in [
        ({"cursor": "garbage!"}, "invalid_cursor"),
        ({"cursor": "MjAyNi0wMS0wMXwx"}, "invalid_cursor"),
        ({"cursor": "x" * 201}, "validation_error"),
        ({"status": "LOST"}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
    ]:
        response = world.shop.client.get(ORDERS, params=params, headers=world.customer)
        assert_refused(response, 422, code)
    for path in ["0", "2147483648", "abc"]:
        response = world.shop.client.get(f"{ORDERS}/{path}", headers=world.customer)
        assert_refused(response, 422, "validation_error")
        response = world.post(path, "cancel", world.manager)
        assert_refused(response, 422, "validation_error")


def test_every_changing_route_requires_a_permission(database_url):
    from fastapi.routing import APIRoute

    from tecnorev.auth.deps import required_permission
    from tecnorev.sales.routes import router
    from tecnorev.testing.auth import all_permissions_but, create_user, login_header

    with api_client(database_url) as client:
        engine = client.app.state.engine
        checked = 0
        for route in router.routes:
            assert isinstance(route, APIRoute)
            for method in route.methods - {"GET", "HEAD"}:
                codes = [required_permission(d.call) for d in route.dependant.dependencies]
                required = [c for c in codes if c]
                assert len(required) == 1, (method, route.path)
                url = "/api/v1" + route.path.replace("{coupon_id}", "1").replace("{order_id}", "1")
                assert client.request(method, url, json={}).status_code == 401
                with Session(engine) as session:
                    user = create_user(
                        session,
                        f"{checked}@example.com",
                        permissions=all_permissions_but(required[0]),
                    )
                    header = login_header(session, user.id)
                    session.commit()
                response = client.request(method, url, json={}, headers=header)
                assert response.status_code == 403, (method, route.path, response.text)
                checked += 1
        assert checked == 5
