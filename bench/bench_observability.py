"""What logging, metrics and the outbox cost, next to the database floor, in one run.

One throwaway PostgreSQL database and data set (as ``bench_api.py`` makes them), the pgbench
floors of the product list and order placement, then ``tecnorev serve`` once per variant,
each measured with the same clients for the same time:

* ``bare``: per-request metrics off (``TECNOREV_METRICS=0``), no access log (warning level);
* ``metrics``: the default metrics, no access log;
* ``metrics + JSON log``: metrics, and a JSON access line per request (info level), written
  to a file as a production log collector would read it;
* ``everything``: the last, with the outbox dispatcher of each worker listening as well.

Order placement publishes no event, so the outbox writes nothing on it (the run checks the
outbox is empty afterwards).  Its cost shows on a cancellation, which stores two deliveries
(payments' refund, logistics' shipment cancellation) and delivers them right after the
commit: measured in process, cancellations with the installed subscribers against the same
cancellations with none (no row, no delivery), median of each.

Each variant runs ``--rounds`` times, the rounds in alternating order (so that none always
comes first, after the floors, or last); the table has the mean of its rounds.  Figures and
ratios are printed, never asserted; ``bare`` is the baseline of the ratios.

    python bench/bench_observability.py                 # 1 worker, 32 clients, 10 s each
    python bench/bench_observability.py --workers 2 --duration 20
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_api as api
import load as loadgen

VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "bare": ({"TECNOREV_METRICS": "0", "TECNOREV_OUTBOX_IN_SERVICE": "0"}, "warning"),
    "metrics": ({"TECNOREV_OUTBOX_IN_SERVICE": "0"}, "warning"),
    "metrics + JSON log": (
        {"TECNOREV_LOG_FORMAT": "json", "TECNOREV_OUTBOX_IN_SERVICE": "0"},
        "info",
    ),
    "everything": ({"TECNOREV_LOG_FORMAT": "json"}, "info"),
}


@dataclass
class Row:
    variant: str
    scenario: str
    result: loadgen.LoadResult
    cpu: api.CpuSplit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--cancellations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each variant")
    args = parser.parse_args(argv)
    options = dataclasses.replace(
        api.parse_options(["--workers", str(args.workers)]),
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients,
        scenarios=["product list", "order placement"],
    )
    os.environ["SECRET_KEY"] = api.SECRET_KEY
    os.environ.setdefault("TECNOREV_ENV", "development")
    api.describe_machine(options)
    report = api.Report()
    rows: list[Row] = []
    with (
        api.throwaway_database(options.admin_url) as url,
        tempfile.TemporaryDirectory(prefix="tecnorev-bench-obs-") as tmp,
    ):
        os.environ["DATABASE_URL"] = url
        api.migrate(url)
        data = api.load_data(url, products=options.products, customers=options.customers)
        api.measure_floor(options, url, data, report)
        order = list(VARIANTS)
        for round_ in range(args.rounds):
            for variant in order if round_ % 2 == 0 else reversed(order):
                env, level = VARIANTS[variant]
                log = Path(tmp) / f"{variant.replace(' ', '-')}-{round_}.log"
                rows += measure_variant(options, url, data, variant, env, level, log)
        outbox_rows = _count(url, "SELECT count(*) FROM tecnorev_outbox")
        print(f"\noutbox rows after every order placement run: {outbox_rows}")
        cancel_cost = measure_cancellations(url, data, args.cancellations)
    print_table(rows, report, cancel_cost)
    return 0


def measure_variant(
    options: api.Options,
    url: str,
    data: api.DataSet,
    variant: str,
    env: dict[str, str],
    level: str,
    log: Path,
) -> list[Row]:
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
    rows = []
    with api.Server(url, options.workers[0], log, level, env=env) as server:
        print(f"\n{variant}: {' '.join(f'{k}={v}' for k, v in env.items())} --log-level {level}")
        api.warm_up(options, server, data, loads.values())
        for name, load in loads.items():
            result, cpu = api.measure_load(options, server, url, api._fresh(load, data))
            print(
                f"  {name:<16} {result.rate:8.0f} req/s  p50 {result.p50_ms:6.1f} ms  "
                f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}"
            )
            rows.append(Row(variant, name, result, cpu))
    lines = log.read_text().count('"tecnorev.access"') if log.exists() else 0
    print(f"  access lines written: {lines:,} ({log.stat().st_size / 1e6:.1f} MB of log)")
    return rows


def measure_cancellations(url: str, data: api.DataSet, n: int) -> dict[str, float]:
    """Median milliseconds of one cancellation (its unit of work and what follows the commit)
    with the installed subscribers, and with none."""
    from tecnorev.core.db import create_db_engine, session_scope
    from tecnorev.core.registry import Registry, get_registry
    from tecnorev.sales import service as sales

    installed = get_registry()
    silent = Registry.from_modules(
        dataclasses.replace(module, subscribers=()) for module in installed.modules
    )
    engine = create_db_engine(url, pool_size=2)
    orders = []
    for i in range(2 * n):
        with session_scope(engine, registry=installed) as session:
            placed = sales.place_order(
                session,
                customer_id=data.customers[0],
                branch_id=data.branch_id,
                items=[(data.first_product + i % data.active, 1)],
            )
            orders.append(placed.order.id)
    timings: dict[str, list[float]] = {"with the outbox": [], "without subscribers": []}
    # interleaved, so that both see the same machine
    for i, order_id in enumerate(orders):
        label, registry = (
            ("with the outbox", installed) if i % 2 == 0 else ("without subscribers", silent)
        )
        started = time.perf_counter()
        with session_scope(engine, registry=registry) as session:
            sales.cancel_order(session, order_id=order_id)
        timings[label].append((time.perf_counter() - started) * 1000)
    engine.dispose()
    delivered = _count(url, "SELECT count(*) FROM tecnorev_outbox WHERE status = 'delivered'")
    print(
        f"\ncancellations: {n} with the outbox ({delivered} deliveries made), "
        f"{n} without subscribers"
    )
    return {label: statistics.median(values) for label, values in timings.items()}


def _count(url: str, query: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        found = connection.exec_driver_sql(query).scalar_one()
    engine.dispose()
    return int(found)


def print_table(rows: list[Row], report: api.Report, cancel_cost: dict[str, float]) -> None:
    means: dict[tuple[str, str], tuple[float, float, float]] = {}
    for key in dict.fromkeys((row.variant, row.scenario) for row in rows):
        mine = [row for row in rows if (row.variant, row.scenario) == key]
        means[key] = (
            statistics.mean(row.result.rate for row in mine),
            statistics.mean(row.result.p99_ms for row in mine),
            statistics.mean(1000 * row.cpu.server / max(1, row.result.requests) for row in mine),
        )
    head = (
        f"{'variant':<20} {'scenario':<16} {'req/s':>7} {'p99 ms':>7} {'server ms/req':>13} "
        f"{'vs bare':>8} {'vs floor':>8}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for (variant, scenario), (rate, p99, per) in means.items():
        base = means[("bare", scenario)][0]
        floor = report.floors.get(scenario)
        print(
            f"{variant:<20} {scenario:<16} {rate:7.0f} {p99:7.1f} {per:13.2f} {rate / base:8.0%} "
            + (f"{rate / floor.tps:8.0%}" if floor and floor.tps else f"{'-':>8}")
        )
    with_outbox, without = cancel_cost["with the outbox"], cancel_cost["without subscribers"]
    print(
        f"\none cancellation, median: {with_outbox:.2f} ms with the outbox (2 rows, a NOTIFY, "
        f"2 reactions delivered), {without:.2f} ms without subscribers: "
        f"+{with_outbox - without:.2f} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
