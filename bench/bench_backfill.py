"""A batched backfill of a big table, alone and while orders are placed, and what each does
to the other.

One run creates a throwaway PostgreSQL database, migrates it with ``tecnorev db upgrade
heads`` and loads bench_api.py's data set for order placement (1,000 products, one branch
holding stock of each, 64 customers with a live login), then grows the product table to
``--rows`` rows with ``INSERT ... SELECT generate_series``.  The backfill is the README's
expand revision on that table: ``title`` added beside ``name``, then
``backfill.declare("product_title", table="product", assign="title = name",
where="title IS NULL")``, both through Alembic's operations as a revision's ``upgrade()``
would run them; ``tecnorev db backfill run`` runs it.  Order placement reads that table (the
prices, and a key-share lock on each ordered product from the foreign keys of the order's
items and movements), so the two share a table as well as the CPU, the disk and the WAL.

Four figures, each measured from a compacted table (``VACUUM FULL``), a vacuumed database and
a checkpoint, so every backfill walks the same rows in the same pages:

1. the backfill alone: rows/s, from the job's own start and end (one row per key);
2. order placement alone for ``--duration`` s: orders/s, p50 and p99 (wrk, ``--clients``
   keep-alive clients, ``tecnorev serve --workers N``);
3. the same backfill again while the same order load runs: the load starts once the first
   batch has committed and is stopped when the backfill ends, so every order measured ran
   during it; backfill rows/s, orders/s, p50 and p99;
4. the ratios: rows/s under load / alone, order p99 (and orders/s) during / without.

    python bench/bench_backfill.py                        # 1,000,000 rows, batches of 1000
    python bench/bench_backfill.py --batch-size 1000,200 --pause 0.01
    python bench/bench_backfill.py --rows 100000 --duration 10 --workers 2

Figures are printed, never asserted; the database is dropped at the end, also on failure.
Needs wrk (stopped with SIGINT, on which it reports) and PostgreSQL at TEST_DATABASE_URL
(default: postgres on 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_api as api  # noqa: E402
import load as loadgen  # noqa: E402

if TYPE_CHECKING:
    from tecnorev.migrate.backfill import Backfill

BACKFILL = "product_title"
REVISION = "bench_backfill"  # stands for the expand revision that would declare it
DEMO_PRODUCTS = 1000  # bench_api's catalogue: the products orders are placed for
CUSTOMERS = 64
COMMAND_TIMEOUT = 1800.0  # seconds: the bound of each backfill and of the load under it
STOP_TIMEOUT = 30.0  # seconds for wrk to report after SIGINT
POLL = 0.05  # seconds between looks at the job's progress


@dataclass(frozen=True)
class Options:
    rows: int
    duration: float
    warmup: float
    clients: int
    workers: int
    batch_sizes: list[int]
    pause: float
    admin_url: str


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows the backfill walks")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of orders alone")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of order warm-up")
    parser.add_argument("--clients", type=int, default=32, help="concurrent order clients")
    parser.add_argument("--workers", type=int, default=1, help="tecnorev serve --workers")
    parser.add_argument(
        "--batch-size",
        default="1000",
        help="rows per batch; several, comma-separated, are each measured alone and under load",
    )
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between batches")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.batch_size.split(",") if size.strip()]
    if not sizes or min(sizes) < 1:
        parser.error("--batch-size takes whole numbers of at least 1, e.g. 1000,200")
    if args.rows < DEMO_PRODUCTS:
        parser.error(f"--rows: at least {DEMO_PRODUCTS} (the products orders are placed for)")
    if args.workers < 1 or args.clients < 1 or args.pause < 0:
        parser.error("--workers and --clients take 1 or more, --pause 0 or more")
    return Options(
        rows=args.rows,
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients,
        workers=args.workers,
        batch_sizes=sizes,
        pause=args.pause,
        admin_url=os.environ.get("TEST_DATABASE_URL", api.DEFAULT_ADMIN_URL),
    )


# --------------------------------------------------------------------------- the database


def tecnorev_db(url: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``tecnorev db <args>`` started in the background, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(api.BIN / "tecnorev"), "db", *args],
            cwd=api.ROOT,
            env={**os.environ, "DATABASE_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError(f"{process.args} still ran after {timeout:.0f} s") from None
    if code:
        raise RuntimeError(f"{process.args} exited with {code}:\n{log.read_text()[-3000:]}")


def grow_products(engine: sa.Engine, rows: int) -> None:
    """Products up to ``rows`` in all, shaped like bench_api's (active, in its aisles), after
    the ones orders are placed for."""
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                """
                WITH aisles AS (
                    SELECT array_agg(id ORDER BY id) AS ids FROM category
                    WHERE parent_id IS NOT NULL
                )
                INSERT INTO product (sku, name, description, price, is_active, category_id,
                                     created_at, updated_at)
                SELECT 'FILL-' || lpad(g::text, 8, '0'),
                       'Product ' || g || ' ' || (ARRAY['red', 'blue', 'steel', 'oak'])[1 + g % 4],
                       repeat('A product of the benchmark catalogue. ', 4),
                       1 + (g % 50000) / 100.0, true, ids[1 + g % cardinality(ids)], now(), now()
                FROM aisles, generate_series(1, :extra) AS g
                """
            ),
            {"extra": rows - DEMO_PRODUCTS},
        )


@contextlib.contextmanager
def revision_operations(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Alembic's ``op`` bound to one transaction, as inside a revision's ``upgrade()``."""
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as connection, Operations.context(MigrationContext.configure(connection)):
        yield connection


def expand(engine: sa.Engine) -> None:
    """The expand revision's upgrade(): the new column, then its backfill's declaration."""
    from alembic import op

    from tecnorev.migrate import backfill

    with revision_operations(engine):
        op.add_column("product", sa.Column("title", sa.String(200), nullable=True))
        backfill.declare(
            BACKFILL,
            table="product",
            key="id",
            assign="title = name",
            where="title IS NULL",
            revision=REVISION,
        )


def unexpand(engine: sa.Engine) -> None:
    """Its downgrade: the declaration and the column gone, so the next expand starts over."""
    from alembic import op

    from tecnorev.migrate import backfill

    with revision_operations(engine) as connection:
        backfill.forget_revision(connection, REVISION)
        op.drop_column("product", "title")


def settle(engine: sa.Engine, *, compact: bool) -> float:
    """The same starting point for every measurement; the seconds it took.  ``compact``: the
    product table rewritten without the dead rows of the last backfill (this server may run
    without autovacuum, and a table twice its size would slow the next walk)."""
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("SET lock_timeout = '60s'")
        if compact:
            connection.exec_driver_sql("VACUUM (FULL) product")
        connection.exec_driver_sql("VACUUM (ANALYZE)")
        connection.exec_driver_sql("CHECKPOINT")  # no dirty pages left over to write
    return time.perf_counter() - started


def the_job(engine: sa.Engine) -> Backfill:
    from tecnorev.migrate import backfill

    with engine.connect() as connection:
        return next(job for job in backfill.read(connection) if job.name == BACKFILL)


# --------------------------------------------------------------------------- measuring


@dataclass
class BackfillRun:
    batch_size: int
    rows: int  # keys walked
    updated: int
    batches: int
    seconds: float  # the job's first batch to its end, from its own timestamps
    command: float  # the whole command, its start-up included
    cpu: api.CpuSplit

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Together:
    backfill: BackfillRun
    orders: loadgen.LoadResult


def start_backfill(
    url: str, options: Options, batch_size: int, log: Path
) -> subprocess.Popen[bytes]:
    return tecnorev_db(
        url,
        *("backfill", "run", BACKFILL, "--batch-size", str(batch_size)),
        *("--pause", str(options.pause)),
        log=log,
    )


def backfill_run(
    engine: sa.Engine, batch_size: int, command: float, cpu: api.CpuSplit
) -> BackfillRun:
    job = the_job(engine)
    if not job.done or job.started_at is None or job.finished_at is None:
        raise RuntimeError(f"backfill {job.label} did not finish: {job.progress()} {job.error}")
    return BackfillRun(
        batch_size=batch_size,
        rows=job.rows_scanned,
        updated=job.rows_updated,
        batches=job.batches,
        seconds=(job.finished_at - job.started_at).total_seconds(),
        command=command,
        cpu=cpu,
    )


def backfill_alone(
    url: str, engine: sa.Engine, options: Options, batch_size: int, log: Path
) -> BackfillRun:
    started = time.perf_counter()
    process = start_backfill(url, options, batch_size, log)
    with api.CpuMeter(api._database_name(url), process.pid) as meter:
        finish(process, log, COMMAND_TIMEOUT)
        cpu = meter.stop(0.0)
    return backfill_run(engine, batch_size, time.perf_counter() - started, cpu)


def order_load(data: api.DataSet) -> loadgen.OrderLoad:
    """Fresh access tokens (15 minutes) for each measurement."""
    return loadgen.OrderLoad(
        tokens=api.access_tokens(data),
        first_product=data.first_product,
        products=data.active,
        branch_id=data.branch_id,
        lines=api.ORDER_LINES,
    )


def orders_alone(
    server: api.Server, data: api.DataSet, options: Options, url: str
) -> tuple[loadgen.LoadResult, api.CpuSplit]:
    assert server.process is not None
    with api.CpuMeter(api._database_name(url), server.process.pid) as meter:
        result = loadgen.run(
            order_load(data),
            base_url=server.base_url,
            clients=options.clients,
            duration=options.duration,
            tool="wrk",
        )
        return result, meter.stop(result.cpu_seconds)


def _signal_wrk(sig: int) -> None:
    """Signal the wrk this process started (loadgen runs it; only its pid is ours to find)."""
    for pid, (ppid, _, command) in api._processes().items():
        if ppid == os.getpid() and command == "wrk":
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def _wait_for_job(
    engine: sa.Engine,
    process: subprocess.Popen[bytes],
    until: Callable[[str, int], bool],
    timeout: float,
) -> None:
    """Poll the job's row (state, batches) on one connection until ``until`` holds or the
    command has ended."""
    from tecnorev.migrate.backfill import backfill_job

    query = sa.select(backfill_job.c.state, backfill_job.c.batches).where(
        backfill_job.c.revision == REVISION, backfill_job.c.name == BACKFILL
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as connection:
        while time.monotonic() < deadline:
            state, batches = connection.execute(query).one()
            connection.rollback()
            if until(state, batches) or process.poll() is not None:
                return
            time.sleep(POLL)
    raise RuntimeError(f"the backfill did not get there within {timeout:.0f} s")


def backfill_with_orders(
    url: str,
    engine: sa.Engine,
    server: api.Server,
    data: api.DataSet,
    options: Options,
    batch_size: int,
    log: Path,
) -> Together:
    from tecnorev.migrate.backfill import DONE

    assert server.process is not None
    load = order_load(data)
    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            # bounded by its own duration; stopped far sooner, when the backfill ends
            outcome["result"] = loadgen.run(
                load,
                base_url=server.base_url,
                clients=options.clients,
                duration=COMMAND_TIMEOUT,
                tool="wrk",
            )
        except Exception as exc:  # reported by the caller
            outcome["error"] = exc

    started = time.perf_counter()
    process = start_backfill(url, options, batch_size, log)
    driver = threading.Thread(target=drive, daemon=True)
    try:
        # orders start once a batch has committed and stop when the last one has: every order
        # measured runs during the backfill, none during the command's start-up or exit
        _wait_for_job(engine, process, lambda _state, batches: batches > 0, 120)
        with api.CpuMeter(api._database_name(url), server.process.pid) as meter:
            driver.start()
            _wait_for_job(engine, process, lambda state, _batches: state == DONE, COMMAND_TIMEOUT)
            # SIGINT makes wrk stop and print its report; repeated in case it was still starting
            deadline = time.monotonic() + STOP_TIMEOUT
            while driver.is_alive() and time.monotonic() < deadline:
                _signal_wrk(signal.SIGINT)
                driver.join(0.5)
            cpu = meter.stop(0.0)
        finish(process, log, 60)
        command = time.perf_counter() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if driver.is_alive():
            _signal_wrk(signal.SIGKILL)
            driver.join(10)
    if "error" in outcome:
        raise RuntimeError(f"the order load failed: {outcome['error']}")
    if "result" not in outcome:
        raise RuntimeError("wrk did not report after SIGINT")
    result = outcome["result"]
    assert isinstance(result, loadgen.LoadResult)
    return Together(backfill_run(engine, batch_size, command, cpu), result)


# --------------------------------------------------------------------------- reporting


def _idle_note(idle: float) -> str:
    return "" if idle >= 0.85 else f"  (only {idle:.0%} of the CPU idle before: figures low)"


def _cpu(cpu: api.CpuSplit, first: str) -> str:
    return (
        f"CPU s: {first} {cpu.server:.1f}, PostgreSQL {cpu.postgres:.1f}, rest of the machine "
        f"{cpu.busy - cpu.server - cpu.postgres:.1f}, of {cpu.capacity:.1f}"
    )


def print_backfill(label: str, run: BackfillRun, idle: float) -> None:
    per_batch = 1000 * run.seconds / max(1, run.batches)
    print(
        f"  {label:<30} {run.rows:,} rows in {run.seconds:.1f} s: {run.rate:,.0f} rows/s "
        f"({run.batches:,} batches, {per_batch:.0f} ms each; the command {run.command:.1f} s)"
        + _idle_note(idle)
    )


def print_orders(label: str, result: loadgen.LoadResult, idle: float | None = None) -> None:
    print(
        f"  {label:<30} {result.rate:,.0f} orders/s  p50 {result.p50_ms:.1f} ms  "
        f"p99 {result.p99_ms:.1f} ms  max {result.max_ms:.0f} ms  errors {result.errors}  "
        f"({result.seconds:.1f} s)" + ("" if idle is None else _idle_note(idle))
    )


def print_table(
    alone: dict[int, BackfillRun],
    orders: loadgen.LoadResult,
    together: dict[int, Together],
    pause: float,
) -> None:
    head = (
        f"{'measurement':<24} {'batch':>6} {'rows/s':>9} {'orders/s':>9} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6} {'seconds':>8}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    print(
        f"{'orders alone':<24} {'-':>6} {'-':>9} {orders.rate:9.0f} {orders.p50_ms:7.1f} "
        f"{orders.p99_ms:7.1f} {orders.errors:>6} {orders.seconds:8.1f}"
    )
    for size, run in alone.items():
        print(
            f"{'backfill alone':<24} {size:>6} {run.rate:9,.0f} {'-':>9} {'-':>7} {'-':>7} "
            f"{'-':>6} {run.seconds:8.1f}"
        )
        both = together.get(size)
        if both is None:
            continue
        o = both.orders
        print(
            f"{'backfill + orders':<24} {size:>6} {both.backfill.rate:9,.0f} {o.rate:9.0f} "
            f"{o.p50_ms:7.1f} {o.p99_ms:7.1f} {o.errors:>6} {both.backfill.seconds:8.1f}"
        )
    print(f"(pause between batches: {pause:g} s)\nratios:")
    for size, both in together.items():
        o = both.orders
        print(
            f"  batch {size}: backfill rows/s under load / alone "
            f"{both.backfill.rate / alone[size].rate:.2f}; order p99 during / without "
            f"{o.p99_ms / orders.p99_ms:.2f}, p50 {o.p50_ms / orders.p50_ms:.2f}, "
            f"orders/s {o.rate / orders.rate:.2f}"
        )


def describe_machine(options: Options) -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; load average "
        f"{Path('/proc/loadavg').read_text().split()[0]}\n"
        f"orders: wrk ({loadgen.wrk_path()}, one thread), {options.clients} clients, "
        f"tecnorev serve --workers {options.workers}; backfill: tecnorev db backfill run "
        f"--batch-size {','.join(map(str, options.batch_sizes))} --pause {options.pause:g}"
    )


# --------------------------------------------------------------------------- the run


def measure(options: Options, url: str, log: Path) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        started = time.perf_counter()
        finish(tecnorev_db(url, "upgrade", "heads", log=log), log, 600)
        data = api.load_data(url, products=DEMO_PRODUCTS, customers=CUSTOMERS)
        grow_products(engine, options.rows)
        expand(engine)
        print(
            f"data set: {options.rows:,} products ({data.active} ordered from), 1 branch, "
            f"{len(data.customers)} customers; migrated and loaded in "
            f"{time.perf_counter() - started:.1f} s"
        )
        print("\nbackfill alone")
        alone: dict[int, BackfillRun] = {}
        for number, size in enumerate(options.batch_sizes):
            if number:
                unexpand(engine)
                expand(engine)
            spent = settle(engine, compact=True)
            idle = api.idle_share()
            alone[size] = backfill_alone(url, engine, options, size, log)
            print_backfill(f"batch {size}", alone[size], idle)
            print(f"  {'':<30} {_cpu(alone[size].cpu, 'backfill command')}; settle {spent:.0f} s")

        together: dict[int, Together] = {}
        with api.Server(url, options.workers, log, stop_grace=api.STOP_GRACE) as server:
            print(f"\nserver: tecnorev serve --workers {options.workers} (port {server.port})")
            load = order_load(data)
            api.check_request(server.base_url, load)
            loadgen.run(
                load,
                base_url=server.base_url,
                clients=options.clients,
                duration=options.warmup,
                tool="wrk",
            )
            unexpand(engine)
            expand(engine)
            settle(engine, compact=True)
            idle = api.idle_share()
            orders, cpu = orders_alone(server, data, options, url)
            print_orders("orders alone", orders, idle)
            print(f"  {'':<30} {_cpu(cpu, 'server')}")
            for number, size in enumerate(options.batch_sizes):
                if number:
                    unexpand(engine)
                    expand(engine)
                    settle(engine, compact=True)
                else:
                    settle(engine, compact=False)  # the table is as expand left it
                idle = api.idle_share()
                both = backfill_with_orders(url, engine, server, data, options, size, log)
                together[size] = both
                print_backfill(f"backfill + orders, batch {size}", both.backfill, idle)
                print_orders("  orders during it", both.orders)
                print(f"  {'':<30} {_cpu(both.backfill.cpu, 'server')}")
        print(f"server {server.stopped}")
        print_table(alone, orders, together, options.pause)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    os.environ["SECRET_KEY"] = api.SECRET_KEY  # before anything reads the settings
    os.environ.setdefault("TECNOREV_ENV", "development")
    if not loadgen.wrk_path():
        print("wrk is not installed (apt-get install wrk): the load must stop with the backfill")
        return 2
    describe_machine(options)
    with (
        api.throwaway_database(options.admin_url) as url,
        tempfile.TemporaryDirectory(prefix="tecnorev-bench-backfill-") as tmp,
    ):
        os.environ["DATABASE_URL"] = url
        log = Path(tmp) / "commands.log"
        try:
            measure(options, url, log)
        except Exception:
            if log.exists():
                print(f"log of the server and commands:\n{log.read_text()[-4000:]}")
            raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
