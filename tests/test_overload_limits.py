"""The limits around the request path, on real ``tecnorev serve`` processes: a login flood
is throttled and keeps memory bounded; SIGTERM stops a worker whose requests wait on a lock;
two workers under 64 clients stay within the server's connections; the embedded SQLite
database takes concurrent writers."""

from __future__ import annotations

import asyncio
import http.client
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import sqlalchemy as sa

from tecnorev.testing.core import metric, metric_samples, migrate

from .serving import (
    ANSWER_BOUND,
    CUSTOMER,
    MANAGER,
    PASSWORD,
    TECNOREV,
    Server,
    _engine,
    _env,
    assert_stock_is_its_ledger,
    bearer,
    connections_of,
    demo_database,
    in_stock_product,
    order_status,
    place_order,
    start_server,
    storm,
    token,
)

pytestmark = [pytest.mark.slow, pytest.mark.exclusive]


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    with demo_database() as url:
        yield url


# --------------------------------------------------------------------------- a login flood

FLOOD_CLIENTS = 48
FLOOD_SECONDS = 15.0
ARGON2_MIB = 64  # pwdlib's argon2 memory cost
# The bound enforced: as many hashes at once as the worker has cores (TECNOREV_PASSWORD_HASHES),
# each with its argon2 memory; the slack covers threads, sockets and the allocator's keep.
HASH_SLOTS = len(os.sched_getaffinity(0))
MEMORY_BOUND_MIB = HASH_SLOTS * ARGON2_MIB + 96


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def flood(base: str, pid: int) -> tuple[Counter, float]:
    """FLOOD_CLIENTS anonymous clients post wrong logins for FLOOD_SECONDS; the statuses,
    and the worker's peak resident memory meanwhile."""
    statuses: Counter = Counter()
    peak = rss_mib(pid)
    deadline = time.monotonic() + FLOOD_SECONDS
    limits = httpx.Limits(max_connections=FLOOD_CLIENTS + 2)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=ANSWER_BOUND + 10) as c:

        async def client(n: int) -> None:
            attempt = 0
            while time.monotonic() < deadline:
                attempt += 1
                email = MANAGER if n % 2 else f"nobody-{n}-{attempt}@example.com"
                response = await c.post(
                    "/api/v1/auth/token", data={"username": email, "password": "not-it-at-all"}
                )
                statuses[response.status_code] += 1

        async def sample() -> None:
            nonlocal peak
            while time.monotonic() < deadline:
                peak = max(peak, rss_mib(pid))
                await asyncio.sleep(0.1)

        await asyncio.wait_for(
            asyncio.gather(sample(), *(client(n) for n in range(FLOOD_CLIENTS))),
            FLOOD_SECONDS + ANSWER_BOUND + 30,
        )
    return statuses, peak


def test_a_login_flood_is_throttled_and_keeps_memory_bounded(demo_url, tmp_path):
    server = start_server(demo_url, 1, tmp_path)  # one worker: the serving process itself
    try:
        for _ in range(3):  # warm: the first hash allocates the argon2 arena once
            httpx.post(
                server.base + "/api/v1/auth/token",
                data={"username": "carla@example.com", "password": PASSWORD},
                timeout=30,
            )
        before = rss_mib(server.process.pid)

        statuses, peak = asyncio.run(flood(server.base, server.process.pid))

        assert set(statuses) <= {401, 429, 503}, statuses
        assert statuses[429] > 0, statuses  # the threshold was passed and enforced
        assert peak - before < MEMORY_BOUND_MIB, (before, peak, statuses)
        assert httpx.get(server.base + "/api/v1/catalog/products", timeout=10).status_code == 200
    finally:
        server.stop()


# --------------------------------------------------------------------------- stopping


def test_sigterm_stops_a_worker_whose_requests_wait_on_a_lock(demo_url, tmp_path):
    """Requests wait on a row that another session holds; SIGTERM ends the worker within its
    grace period, their statements cancelled, their transactions rolled back, every
    connection returned to the server."""
    grace = 2.0
    server = start_server(
        demo_url,
        1,
        tmp_path,
        TECNOREV_REQUEST_LOCK_TIMEOUT="5min",
        TECNOREV_SHUTDOWN_GRACE=f"{grace}s",
    )
    holder = _engine(demo_url).connect()
    try:
        manager = bearer(token(server.base, MANAGER))
        order_id = place_order(
            server.base, token(server.base, CUSTOMER), in_stock_product(demo_url)
        )
        holder.execute(sa.text('SELECT 1 FROM "order" WHERE id = :id FOR UPDATE'), {"id": order_id})

        async def wait_on_the_lock() -> None:
            async with httpx.AsyncClient(base_url=server.base, timeout=60) as client:
                sent = [
                    asyncio.create_task(
                        client.post(f"/api/v1/sales/orders/{order_id}/confirm", headers=manager)
                    )
                    for _ in range(20)
                ]
                deadline = time.monotonic() + 30
                while (
                    connections_of(demo_url, server.name, waiting_on_a_lock=True) < 20
                    and time.monotonic() < deadline
                ):
                    await asyncio.sleep(0.1)
                assert connections_of(demo_url, server.name, waiting_on_a_lock=True) == 20
                took = await asyncio.to_thread(server.stop, 30)
                assert took < grace + 8, server.output
                await asyncio.gather(*sent, return_exceptions=True)

        asyncio.run(wait_on_the_lock())

        assert connections_of(demo_url, server.name) == 0
        assert "cancelled the statements of 20 requests" in server.output
    finally:
        holder.rollback()
        holder.close()
        server.stop()
    assert order_status(demo_url, order_id) == "PENDING"  # nothing of theirs was committed


# --------------------------------------------------------------------------- the budget


def test_two_workers_and_64_clients_stay_within_the_servers_connections(demo_url, tmp_path):
    server = start_server(demo_url, 2, tmp_path)
    try:
        customers = [
            bearer(token(server.base, e)) for e in ("ana@example.com", "bruno@example.com")
        ]
        product_id = in_stock_product(demo_url, branch_id=2)
        body = {"branch_id": 2, "items": [{"product_id": product_id, "quantity": 1}]}
        rounds = 4
        sends = [
            lambda c, h=customers[i % 2], order=bool(i % 3): (
                c.post("/api/v1/sales/orders", json=body, headers=h)
                if order
                else c.get("/api/v1/catalog/products?limit=20")
            )
            for i in range(64)
        ]
        results = [asyncio.run(storm(server.base, sends)) for _ in range(rounds)]

        for result in results:
            result.check()
            assert "database_unavailable" not in result.codes, result
        assert "too many clients" not in server.output
        write, read = server.pools()
        with _engine(demo_url).connect() as connection:
            most, reserved = connection.execute(
                sa.text(
                    "SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int"
                )
            ).one()
        assert 2 * (write + read) <= most - reserved - 10  # 10: TECNOREV_DB_CONNECTION_RESERVE
    finally:
        server.stop()


SPREAD_CONNECTIONS = 24
SPREAD_ROUNDS = 200  # each a request on every connection; the split settles in a few
WEBSOCKET_UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def test_two_workers_even_out_the_keep_alive_connections_they_hold(tmp_path):
    """A worker holding more than its share of the server's keep-alive connections answers
    ``Connection: close`` on them (``tecnorev.api.spread``); the clients reconnect, and the
    kernel hashes the new connections afresh until each worker holds half.  Every request is
    answered, the metric counts the connections closed, and an upgrade request (which makes
    no request cycle) is answered as one worker answers it."""
    url = f"sqlite:///{tmp_path / 'spread.db'}"
    migrate(url, "heads")
    server = start_server(url, 2, tmp_path)
    port = int(server.base.rsplit(":", 1)[1])
    clients = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(SPREAD_CONNECTIONS)
    ]
    closed, splits = 0, []
    try:
        for _ in range(SPREAD_ROUNDS):
            closed_now = 0
            for client in clients:
                client.request("GET", "/health")
                answer = client.getresponse()
                answer.read()
                assert answer.status == 200
                closed_now += answer.getheader("connection") == "close"
            closed += closed_now
            # who holds each connection, once the ones just closed have been opened again
            for client in clients:
                if client.sock is None:
                    client.connect()
            splits.append(sorted(_holders(server, clients).values()))
            if closed_now == 0 and splits[-1] == [SPREAD_CONNECTIONS // 2] * 2:
                break
        for client in clients:
            client.close()
        # an upgrade (which makes no request cycle) is answered as by one worker: no such route
        upgrade = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        upgrade.request("GET", "/health", headers=WEBSOCKET_UPGRADE)
        refused = upgrade.getresponse().status
        upgrade.close()
        scrape = httpx.get(server.base + "/metrics", timeout=30)
        closed += scrape.headers.get("connection") == "close"  # the scrape's own, if any
        found = metric_samples(scrape.text)
    finally:
        for client in clients:
            client.close()
        server.stop()
    assert splits[-1] == [SPREAD_CONNECTIONS // 2] * 2, splits
    assert refused == 403
    assert metric(found, "tecnorev_http_connections_rebalanced_total") == closed


def _holders(server: Server, clients: list[http.client.HTTPConnection]) -> Counter[int]:
    """The worker (process id) holding the server's end of each client connection, from
    Linux's socket tables: the established socket whose peer is the client's port, and the
    worker with that socket among its files.  A connection the kernel has established but no
    worker has accepted yet has no file: it is looked for again, for a bounded time."""
    port = int(server.base.rsplit(":", 1)[1])
    ours = {client.sock.getsockname()[1] for client in clients if client.sock is not None}
    deadline = time.monotonic() + 30
    while True:
        sockets = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, peer = (int(part.split(":")[1], 16) for part in fields[1:3])
            if local == port and peer in ours and fields[3] == "01":  # 01: established
                sockets.add(f"socket:[{fields[9]}]")
        held: Counter[int] = Counter()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == server.process.pid:
                    for fd in (entry / "fd").iterdir():
                        held[int(entry.name)] += os.readlink(fd) in sockets
            except OSError:
                continue  # a process or a file that ended meanwhile
        if sum(held.values()) == len(ours):
            return +held  # without the processes that hold none
        assert time.monotonic() < deadline, (held, len(ours))
        time.sleep(0.05)


# --------------------------------------------------------------------------- the embedded default

SQLITE_CLIENTS = 8
SQLITE_SECONDS = 10.0


def test_the_embedded_database_takes_concurrent_writers(tmp_path):
    """SQLite, one worker, 8 clients placing orders: writers queue for the lock (WAL,
    BEGIN IMMEDIATE, a busy timeout) instead of failing with "database is locked"."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    migrate(url, "heads")
    subprocess.run(
        [TECNOREV, "demo", "load"], env=_env(url), check=True, capture_output=True, timeout=120
    )
    with _engine(url).connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        products = (
            connection.execute(
                sa.text("SELECT product_id FROM stock_entry WHERE branch_id = 1 AND quantity > 0")
            )
            .scalars()
            .all()
        )
    server = start_server(url, 1, tmp_path)
    try:
        customers = [
            bearer(token(server.base, e)) for e in ("ana@example.com", "bruno@example.com")
        ]
        statuses: Counter = Counter()
        codes: Counter = Counter()

        async def place() -> None:
            deadline = time.monotonic() + SQLITE_SECONDS
            async with httpx.AsyncClient(base_url=server.base, timeout=ANSWER_BOUND + 10) as c:

                async def client(n: int) -> None:
                    i = n
                    while time.monotonic() < deadline:
                        i += SQLITE_CLIENTS
                        body = {
                            "branch_id": 1,
                            "items": [{"product_id": products[i % len(products)], "quantity": 1}],
                        }
                        response = await c.post(
                            "/api/v1/sales/orders", json=body, headers=customers[n % 2]
                        )
                        statuses[response.status_code] += 1
                        if response.status_code >= 400:
                            codes[response.json()["error"]["code"]] += 1

                await asyncio.wait_for(
                    asyncio.gather(*(client(n) for n in range(SQLITE_CLIENTS))),
                    SQLITE_SECONDS + ANSWER_BOUND + 30,
                )

        asyncio.run(place())

        assert statuses[201] > 0, statuses
        assert set(codes) <= {"insufficient_stock"}, (statuses, codes)  # none from locking
        assert statuses[500] == 0
    finally:
        server.stop()
    assert_stock_is_its_ledger(url)
