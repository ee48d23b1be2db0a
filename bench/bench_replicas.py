"""The product list with its reads on the primary and on a streaming replica, while orders
are placed on the primary, in one run.

One streaming replica of the local PostgreSQL cluster (``tecnorev.testing.replication``:
``pg_basebackup`` on a spare port, streaming through a slot), made first so that the
throwaway database and data set made next (as ``bench_api.py`` makes them) reach it by
replication; the run waits until it has replayed them.  Then ``tecnorev serve`` once per
setup, each measured with two load generators at once for the same time:

* ``product list``: ``GET /api/v1/catalog/products?limit=50`` from a random cursor,
  anonymous (``--clients-list``);
* ``order placement``: ``POST /api/v1/sales/orders`` as a random customer, on the primary
  (``--clients-orders``).

The setups:

* ``reads on the primary``: no replica setting, every request on the primary;
* ``reads on the replica``: ``TECNOREV_READ_REPLICA_URLS`` names the replica's copy of the
  database (checked every 0.2 s); the anonymous list carries no position, so it is served by
  the replica while it serves, and every order answer also asks the primary for its WAL
  position (``X-Tecnorev-LSN``).

The replica streams in both setups, so both pay for its replay; only where the list is read
differs.  During each measurement ``/ready`` is read every 0.5 s, and once at its end: the
replica's state and lag as the API sees them (with reads on the primary, the API has no
replica, and the replica's distance from the primary is read from the servers instead).
Afterwards, the transactions committed in the database on each server while that server ran
(``pg_stat_database``, warm-up included) show where the reads went, and the CPU line splits
the time between the API, the database's backends on both servers, the load generators, the
replication (the primary's WAL sender, the replica's WAL receiver and replay) and the rest.

Everything runs on this machine: the replica takes its CPU from the same cores as the primary,
the API and the load generators, so this measures what routing the reads costs and what
moving them off the primary's backends does to the orders, not added capacity.  Figures are
printed, never asserted; ``--rounds`` alternates the setups' order, the table has the mean.
The servers, the database and the replica (its folder and slot) are removed at the end, also
after an error, Ctrl+C or SIGTERM.

    python bench/bench_replicas.py                        # 1 worker, 16 + 16 clients, 10 s
    python bench/bench_replicas.py --workers 2 --duration 20 --rounds 2
    python bench/bench_replicas.py --clients-list 32 --clients-orders 8

The primary is PostgreSQL at TEST_DATABASE_URL (default: postgres on 127.0.0.1:5432); it must
allow replication connections from 127.0.0.1 (the harness says what to change otherwise).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api as api
import load as loadgen

if TYPE_CHECKING:
    from tecnorev.testing.replication import StreamingReplica

PRIMARY = "reads on the primary"
REPLICA = "reads on the replica"
CHECK_INTERVAL = "0.2s"  # TECNOREV_REPLICA_CHECK_INTERVAL of the replica setup
READY_EVERY = 0.5  # seconds between two reads of /ready during a measurement
SERVING_WAIT = 30.0  # seconds for the replica to serve after the server started


@dataclass
class Lag:
    """The replica as seen during one measurement and at its end."""

    states: Counter[str] = field(default_factory=Counter)  # /ready's state, per read
    max_seconds: float = 0.0
    max_bytes: int = 0
    end: str = ""  # at the end, as printed


@dataclass
class Row:
    setup: str
    list: loadgen.LoadResult
    orders: loadgen.LoadResult
    cpu: api.CpuSplit
    replication_cpu: float
    lag: Lag
    transactions: dict[str, int]  # server -> committed in the database while the API ran


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up each")
    parser.add_argument("--workers", type=int, default=1, help="tecnorev serve --workers")
    parser.add_argument("--clients-list", type=int, default=16, help="product list clients")
    parser.add_argument("--clients-orders", type=int, default=16, help="order placing clients")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each setup")
    parser.add_argument(
        "--load-generator",
        dest="tool",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python generator in bench/load.py",
    )
    args = parser.parse_args(argv)
    if min(args.workers, args.clients_list, args.clients_orders, args.rounds) < 1:
        parser.error("--workers, --clients-list, --clients-orders and --rounds take at least 1")
    options = dataclasses.replace(
        api.parse_options(["--workers", str(args.workers), "--load-generator", args.tool]),
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients_list + args.clients_orders,
        scenarios=["product list", "order placement"],
    )
    clients = {"product list": args.clients_list, "order placement": args.clients_orders}
    os.environ["SECRET_KEY"] = api.SECRET_KEY
    os.environ.setdefault("TECNOREV_ENV", "development")
    # SIGTERM ends the run as Ctrl+C does: through every clean-up below
    signal.signal(signal.SIGTERM, _terminated)
    from tecnorev.testing.replication import HarnessUnavailable, streaming_replica

    api.describe_machine(options)
    print(
        f"  at once: {args.clients_list} clients on the product list, {args.clients_orders} "
        f"placing orders; {args.workers} worker(s)"
    )
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        try:
            replica = stack.enter_context(streaming_replica(options.admin_url))
        except HarnessUnavailable as exc:
            print(f"no streaming replica on this machine: {exc}")
            return 2
        print(
            f"replica: streaming on 127.0.0.1:{replica.port} (slot {replica.slot}), made in "
            f"{time.perf_counter() - started:.1f} s"
        )
        url = stack.enter_context(api.throwaway_database(options.admin_url))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tecnorev-bench-rr-")))
        os.environ["DATABASE_URL"] = url
        started = time.perf_counter()
        api.migrate(url)
        data = api.load_data(url, products=options.products, customers=options.customers)
        replica.wait_caught_up(url, timeout=120)
        database = sa.make_url(url).database or ""
        replica_url = replica.database_url(database)
        print(
            f"data set: {data.products} products ({data.active} active), "
            f"{len(data.customers)} customers; migrated, loaded and replayed by the replica in "
            f"{time.perf_counter() - started:.1f} s"
        )
        setups = {
            PRIMARY: {},
            REPLICA: {
                "TECNOREV_READ_REPLICA_URLS": replica_url,
                "TECNOREV_REPLICA_CHECK_INTERVAL": CHECK_INTERVAL,
            },
        }
        order = list(setups)
        for round_ in range(args.rounds):
            for setup in order if round_ % 2 == 0 else reversed(order):
                log = tmp / f"{setup.replace(' ', '-')}-{round_}.log"
                try:
                    rows.append(
                        measure_setup(
                            options, clients, url, data, replica, setup, setups[setup], log
                        )
                    )
                except Exception:
                    if log.exists():
                        print(f"server log:\n{log.read_text()[-4000:]}")
                    raise
    print(f"removed the replica (its folder {replica.folder} and its slot)")
    print_table(rows)
    return 0


def _terminated(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure_setup(
    options: api.Options,
    clients: dict[str, int],
    url: str,
    data: api.DataSet,
    replica: StreamingReplica,
    setup: str,
    env: dict[str, str],
    log: Path,
) -> Row:
    loads: dict[str, loadgen.Load] = {
        "product list": loadgen.ListLoad(paths=api.list_paths(data)),
        "order placement": loadgen.OrderLoad(
            tokens=[],
            first_product=data.first_product,
            products=data.active,
            branch_id=data.branch_id,
            lines=api.ORDER_LINES,
        ),
    }
    servers = {"primary": url, "replica": replica.database_url(sa.make_url(url).database or "")}
    committed = {name: _committed(server_url) for name, server_url in servers.items()}
    with api.Server(url, options.workers[0], log, options.log_level, env=env) as server:
        print(f"\n{setup}: {' '.join(f'{k}={v}' for k, v in env.items()) or 'no replica setting'}")
        if env:
            _wait_serving(server.base_url)
        fresh = {name: api._fresh(load, data) for name, load in loads.items()}
        for load in fresh.values():
            api.check_request(server.base_url, load)
        run_together(options, server.base_url, fresh, clients, options.warmup)
        fresh = {name: api._fresh(load, data) for name, load in loads.items()}
        lag = Lag()
        watcher = threading.Thread(
            target=_watch_ready, args=(server.base_url, lag, options.duration), daemon=True
        )
        assert server.process is not None
        replication = _replication_ticks(replica)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with api.CpuMeter(api._database_name(url), server.process.pid) as meter:
            watcher.start()
            results = run_together(options, server.base_url, fresh, clients, options.duration)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            generators = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            cpu = meter.stop(generators)
        replication_cpu = _replication_seconds(replication, _replication_ticks(replica))
        watcher.join(timeout=READY_EVERY + 10)
        lag.end = _lag_now(server.base_url, url, replica)
    # less the counter's first reading: a transaction of its own
    transactions = {
        name: _committed(server_url) - committed[name] - 1 for name, server_url in servers.items()
    }
    for name, result in results.items():
        print(
            f"  {name:<16} {result.rate:8.0f} req/s  p50 {result.p50_ms:6.1f} ms  "
            f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}  ({result.tool}, "
            f"{clients[name]} clients)"
        )
    requests = sum(result.requests for result in results.values())
    print(f"  {api._cpu_line(cpu, requests)}")
    print(f"  CPU s of the replication (WAL sender, WAL receiver, replay): {replication_cpu:.1f}")
    print(f"  replica at the end: {lag.end}")
    if lag.states:
        seen = ", ".join(f"{state} {n}" for state, n in lag.states.items())
        print(
            f"  during the run (/ready every {READY_EVERY:g} s): {seen}; at most "
            f"{lag.max_seconds:.3f} s and {lag.max_bytes:,} bytes behind"
        )
        if set(lag.states) != {"serving"}:
            print("  note: the replica did not serve throughout: the primary read meanwhile")
    print(
        "  transactions committed in the database while the server ran (warm-up included): "
        + ", ".join(f"{name} {n:,}" for name, n in transactions.items())
    )
    return Row(
        setup,
        results["product list"],
        results["order placement"],
        cpu,
        replication_cpu,
        lag,
        transactions,
    )


def run_together(
    options: api.Options,
    base_url: str,
    loads: dict[str, loadgen.Load],
    clients: dict[str, int],
    duration: float,
) -> dict[str, loadgen.LoadResult]:
    """Every load at once, each by its own load generator process, for ``duration``."""
    results: dict[str, loadgen.LoadResult] = {}
    failures: list[BaseException] = []

    def run(name: str) -> None:
        try:
            results[name] = loadgen.run(
                loads[name],
                base_url=base_url,
                clients=clients[name],
                duration=duration,
                tool=options.tool,
            )
        except BaseException as exc:  # re-raised in the calling thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in loads]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        _stop_generators()  # interrupted: the generators would run on against no server
        raise
    if failures:
        raise failures[0]
    return {name: results[name] for name in loads}


def _stop_generators() -> None:
    """SIGTERM to the load generators this process started (wrk, or python bench/load.py)."""
    me = os.getpid()
    for pid, (ppid, _, comm) in api._processes().items():
        if ppid != me:
            continue
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if comm == "wrk" or any(part.endswith(b"load.py") for part in command):
                os.kill(pid, signal.SIGTERM)


# --------------------------------------------------------------------------- the replica


def _ready(base_url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{base_url}/ready", timeout=5) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as exc:  # 503: not ready, its body says why
        return json.load(exc)


def _wait_serving(base_url: str) -> None:
    deadline = time.monotonic() + SERVING_WAIT
    while True:
        body = _ready(base_url)
        if [r.get("state") for r in body.get("read_replicas", [])] == ["serving"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the replica does not serve within {SERVING_WAIT:g} s: {body}")
        time.sleep(0.2)


def _watch_ready(base_url: str, lag: Lag, duration: float) -> None:
    """/ready every READY_EVERY seconds while the measurement runs: the replica's state and
    lag, the worst kept."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            for replica in _ready(base_url).get("read_replicas", []):
                lag.states[replica["state"]] += 1
                lag.max_seconds = max(lag.max_seconds, replica.get("lag_seconds") or 0.0)
                lag.max_bytes = max(lag.max_bytes, replica.get("lag_bytes") or 0)
        time.sleep(READY_EVERY)


def _lag_now(base_url: str, url: str, replica: StreamingReplica) -> str:
    """The replica's lag right after the measurement: /ready's, or without replicas in the
    API, the WAL the replica has still to replay (read from both servers)."""
    reported = _ready(base_url).get("read_replicas")
    if reported:
        (state,) = reported
        seconds, behind = state.get("lag_seconds"), state.get("lag_bytes")
        return (
            f"{state['state']}, "
            + ("lag unknown" if behind is None else f"{seconds} s and {behind:,} bytes behind")
            + " (/ready)"
            + (f"; {state['problem']}" if state.get("problem") else "")
        )
    written = _scalar(url, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
    behind = max(0, int(written) - int(replica.replay_lsn()))
    return f"not read by the API; {behind:,} bytes of WAL behind the primary (read from both)"


def _scalar(url: str, query: str) -> Any:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(query).scalar_one()
    finally:
        engine.dispose()


def _committed(url: str) -> int:
    """Transactions committed in ``url``'s database on its server so far (each server counts
    its own: a standby counts the reads it served)."""
    return int(
        _scalar(url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    )


def _replication_ticks(replica: StreamingReplica) -> dict[int, int]:
    """CPU ticks so far of the processes that replicate: the primary's WAL sender of the
    replica's slot, the replica's WAL receiver and its startup process (replay)."""
    processes = api._processes()
    pids = set()
    sender = _scalar(
        replica.primary.url.render_as_string(hide_password=False),
        f"SELECT coalesce((SELECT active_pid FROM pg_replication_slots "
        f"WHERE slot_name = '{replica.slot}'), 0)",
    )
    if sender:
        pids.add(int(sender))
    with contextlib.suppress(OSError, ValueError, IndexError):
        postmaster = int((replica.data_dir / "postmaster.pid").read_text().split()[0])
        for pid, (ppid, _, _) in processes.items():
            if ppid != postmaster:
                continue
            with contextlib.suppress(OSError):
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"walreceiver" in title or b"startup" in title:
                    pids.add(pid)
    return {pid: processes[pid][1] for pid in pids if pid in processes}


def _replication_seconds(before: dict[int, int], after: dict[int, int]) -> float:
    return sum(ticks - before[pid] for pid, ticks in after.items() if pid in before) / api.TICK


# --------------------------------------------------------------------------- the table


def print_table(rows: list[Row]) -> None:
    if not rows:
        return
    means: dict[str, tuple[float, float, float, float]] = {}
    for setup in dict.fromkeys(row.setup for row in rows):
        mine = [row for row in rows if row.setup == setup]
        means[setup] = (
            statistics.mean(row.list.rate for row in mine),
            statistics.mean(row.list.p99_ms for row in mine),
            statistics.mean(row.orders.rate for row in mine),
            statistics.mean(row.orders.p99_ms for row in mine),
        )
    rounds = len(rows) // len(means)
    # a Markdown table: docs/performance.md takes it as printed
    print(
        f"\n| {'setup':<20} | list req/s | list p99 ms | orders req/s | orders p99 ms |\n"
        f"| {'---':<20} | {'---:':>10} | {'---:':>11} | {'---:':>12} | {'---:':>13} |"
    )
    for setup, (list_rate, list_p99, orders_rate, orders_p99) in means.items():
        print(
            f"| {setup:<20} | {list_rate:10,.0f} | {list_p99:11.1f} | {orders_rate:12,.0f} | "
            f"{orders_p99:13.1f} |"
        )
    if rounds > 1:
        print(f"(means of {rounds} rounds)")
    errors = sum(row.list.errors + row.orders.errors for row in rows)
    if errors:
        print(f"note: {errors} requests failed (see the lines above)")
    if PRIMARY in means and REPLICA in means and means[PRIMARY][0] and means[PRIMARY][2]:
        on_primary, on_replica = means[PRIMARY], means[REPLICA]
        print(
            f"list, replica ÷ primary: {on_replica[0] / on_primary[0]:.2f}x req/s, "
            f"{on_replica[1] / on_primary[1]:.2f}x p99; orders meanwhile: "
            f"{on_replica[2] / on_primary[2]:.2f}x req/s, {on_replica[3] / on_primary[3]:.2f}x p99"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the servers, the database and the replica were stopped and removed")
        sys.exit(130)
