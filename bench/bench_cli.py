"""``tecnorev db`` against plain ``alembic`` given the same version locations statically.

For the installed modules, then for generated trees of N modules x R revisions (see
generate_tree.py), each command runs as a subprocess, ours and plain alternating, and the
figures are the median, p90 and minimum wall time.  Outputs are compared (a mismatch makes the
exit status 1); timings are only reported, never asserted.

    python bench/bench_cli.py                      # installed, 50x10 and 200x10
    python bench/bench_cli.py --sizes 50,100,200 --max-runs 20
    python bench/bench_cli.py --online             # also upgrade/downgrade SQLite files

Plain alembic gets an alembic.ini listing the modules' migration folders in version_locations
(in the order the registry finds them, path_separator = os) and a minimal env.py configured
with the same offline options as ours, so both produce the same SQL.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate_tree import generate_tree  # noqa: E402

BIN = Path(sys.executable).parent
MIN_RUNS = 3
# Data migrations stamp rows with the time they run: the only legitimate difference.
TIMESTAMP = re.compile(r"'\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:?\d\d)?'")
RUNNING = re.compile(r"^-- Running (?:upgrade|downgrade) ", re.M)
VERSION_STATEMENT = re.compile(
    r"^(?P<kind>INSERT INTO|UPDATE|DELETE FROM) alembic_version\b[^;]*;$", re.M
)
NEW_VERSION = re.compile(r"VALUES \('([^']+)'\)|SET version_num='([^']+)'")
OLD_VERSION = re.compile(r"WHERE alembic_version\.version_num = '([^']+)'")
REVISION_ID = re.compile(r"\b[a-z][a-z0-9_]*_[0-9a-f]{12}\b")

PLAIN_ENV = '''"""Minimal env.py for plain alembic: the options tecnorev's environment uses."""

import os
from logging.config import fileConfig

from sqlalchemy import create_engine, pool

from alembic import context

fileConfig(context.config.config_file_name, disable_existing_loggers=False)
url = os.environ["DATABASE_URL"]
if context.is_offline_mode():
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
'''

PLAIN_INI = """[alembic]
script_location = {env}
version_locations = {locations}
path_separator = os

[loggers]
keys = root,alembic

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARNING
handlers = console

[logger_alembic]
level = INFO
handlers =
qualname = alembic

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[formatter_generic]
format = %(levelname)-5.5s [%(name)s] %(message)s
"""


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)

    def _sorted(self) -> list[float]:
        return sorted(self.seconds)

    @property
    def median(self) -> float:
        values = self._sorted()
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    @property
    def p90(self) -> float:
        values = self._sorted()
        return values[min(len(values) - 1, math.ceil(0.9 * len(values)) - 1)]

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def spread(self) -> float:
        """(p90 - min) / median: how noisy the machine was for this figure."""
        return (self.p90 - self.min) / self.median


@dataclass(frozen=True)
class Tool:
    name: str
    argv: list[str]
    env: dict[str, str]


@dataclass
class Result:
    scenario: str
    revisions: int
    command: str
    ours: Sample | None = None
    plain: Sample | None = None
    output: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.plain is None:
            return None
        return self.ours.median / self.plain.median


def run_once(tool: Tool, cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(tool.argv, cwd=cwd, env=tool.env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(tool.argv)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done


def measure_pair(
    ours: Tool,
    plain: Tool,
    cwd: Path,
    options: argparse.Namespace,
    prepare: Callable[[], None] = lambda: None,
) -> tuple[Sample, Sample, subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """Warm up each tool once (its output is the one compared), then alternate them so that
    a busy neighbour slows both alike; as many runs as fit the time budget."""
    prepare()
    first_ours, ours_out = run_once(ours, cwd)
    prepare()
    first_plain, plain_out = run_once(plain, cwd)
    runs = int(options.budget / (first_ours + first_plain))
    runs = max(MIN_RUNS, min(options.max_runs, runs))
    samples = {ours.name: Sample(), plain.name: Sample()}
    for i in range(runs):
        for tool in (ours, plain) if i % 2 == 0 else (plain, ours):
            prepare()
            samples[tool.name].seconds.append(run_once(tool, cwd)[0])
    return samples[ours.name], samples[plain.name], ours_out, plain_out


# --------------------------------------------------------------------------- comparing


def compare_text(ours: str, plain: str) -> str:
    if ours == plain:
        return "identical"
    return "MISMATCH:\n" + _first_difference(ours, plain)


def compare_sql(ours: str, plain: str) -> str:
    """Identical once data-migration timestamps are masked; failing that, the same statements
    for every revision and the same final alembic_version (alembic orders independent branches
    by set iteration, which changes with PYTHONHASHSEED, and the version-table statements
    follow that order)."""
    if ours == plain:
        return "identical"
    ours_masked, plain_masked = TIMESTAMP.sub("'<now>'", ours), TIMESTAMP.sub("'<now>'", plain)
    if ours_masked == plain_masked:
        return "identical once data-migration timestamps are masked"
    if _meaning(ours_masked) == _meaning(plain_masked):
        return "same per-revision SQL and final alembic_version; branch order differs"
    return "MISMATCH:\n" + _first_difference(ours_masked, plain_masked)


def _meaning(sql: str) -> tuple[Counter[str], frozenset[str]]:
    """(each revision's statements without the version-table ones, the final version rows)."""
    blocks = Counter(VERSION_STATEMENT.sub("", block).strip() for block in RUNNING.split(sql))
    versions: set[str] = set()
    for statement in VERSION_STATEMENT.finditer(sql):
        if old := OLD_VERSION.search(statement[0]):
            versions.discard(old[1])
        if new := NEW_VERSION.search(statement[0]):
            versions.add(new[1] or new[2])
    return blocks, frozenset(versions)


def _first_difference(a: str, b: str) -> str:
    for number, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), 1):
        if x != y:
            return f"  line {number}:\n  ours : {x[:160]}\n  plain: {y[:160]}"
    return f"  one output is a prefix of the other ({len(a)} vs {len(b)} characters)"


def compare_status(status_json: str, plain_current: str, plain_heads: str) -> str:
    """status names, per module, the database's revisions and the code's heads; plain alembic
    says the same with ``current`` (every applied head, implied ones included) and ``heads``."""
    try:
        modules = json.loads(status_json)["modules"]
        recorded = {r for m in modules for r in m["database_revisions"]}
        heads = {r for m in modules for r in m["code_heads"]}
    except (ValueError, KeyError, TypeError) as exc:
        return f"not compared: unexpected `status --json` shape ({exc})"
    expected_recorded = set(REVISION_ID.findall(plain_current))
    expected_heads = set(REVISION_ID.findall(plain_heads))
    if recorded == expected_recorded and heads == expected_heads:
        return "same revisions as `alembic current` and `alembic heads`"
    return (
        f"MISMATCH: status recorded-plain current {sorted(recorded - expected_recorded)[:5]}, "
        f"plain current-status {sorted(expected_recorded - recorded)[:5]}, heads differ: "
        f"{sorted(heads ^ expected_heads)[:5]}"
    )


def revisions_run(log: str) -> list[str]:
    return re.findall(r"Running (?:upgrade|downgrade) .*?-> ([^,\s]*)", log)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    label: str
    modules: int
    revisions: int
    workdir: Path
    env: dict[str, str]
    plain_ini: Path

    def ours(self, *args: str, **extra_env: str) -> Tool:
        return Tool("ours", [str(BIN / "tecnorev"), "db", *args], {**self.env, **extra_env})

    def plain(self, *args: str, **extra_env: str) -> Tool:
        argv = [str(BIN / "alembic"), "-c", str(self.plain_ini), *args]
        return Tool("plain", argv, {**self.env, **extra_env})

    def driver(self, tool: str, *args: str) -> Tool:
        script = str(HERE / "offline_downgrade.py")
        ini = [str(self.plain_ini)] if tool == "plain" else []
        return Tool(tool, [sys.executable, script, tool, *ini, *args], self.env)


def make_scenario(label: str, base: Path, site: Path | None) -> Scenario:
    workdir = base / re.sub(r"\W", "_", label)
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TECNOREV_DEBUG", "PYTHONHASHSEED")}
    # Installed wheels come with bytecode (pip compiles it); without a cache every run would
    # compile every migration file.  The warm-up run fills a cache kept out of the tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(base / "pycache")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    # alembic orders independent branches by set iteration: one seed for both tools makes
    # their outputs comparable line for line (compare_sql copes without it).
    env["PYTHONHASHSEED"] = "0"
    # Offline commands never open it: it must still not exist afterwards.
    env["DATABASE_URL"] = f"sqlite:///{workdir / 'offline.db'}"
    locations, count = discovered_locations(env, workdir)
    plain_ini = write_plain_alembic(workdir / "plain", locations)
    return Scenario(label, len(locations), count, workdir, env, plain_ini)


def discovered_locations(env: dict[str, str], cwd: Path) -> tuple[list[str], int]:
    """The migration folders in registry order, as our CLI finds them, and the revision count."""
    code = (
        "import json, os\n"
        "from tecnorev.migrate.modules import get_registry\n"
        "paths = [str(p) for p in get_registry().version_locations()]\n"
        "count = sum(1 for p in paths for f in os.listdir(p) if f.endswith('.py'))\n"
        "print(json.dumps([paths, count]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    paths, count = json.loads(done.stdout)
    return paths, count


def write_plain_alembic(folder: Path, locations: Sequence[str]) -> Path:
    (folder / "env").mkdir(parents=True)
    (folder / "env" / "env.py").write_text(PLAIN_ENV)
    ini = folder / "alembic.ini"
    joined = os.pathsep.join(locations).replace("%", "%%")
    ini.write_text(PLAIN_INI.format(env=folder / "env", locations=joined))
    return ini


def database_at_heads(scenario: Scenario) -> Path:
    """A SQLite file at every head, migrated once by ``tecnorev db upgrade heads``."""
    path = scenario.workdir / "at_heads.db"
    tool = scenario.ours("upgrade", "heads", DATABASE_URL=f"sqlite:///{path}")
    started = time.perf_counter()
    run_once(tool, scenario.workdir)
    print(f"  (database at heads prepared in {time.perf_counter() - started:.1f} s)")
    return path


def status_registered(scenario: Scenario) -> bool:
    done = subprocess.run(
        [str(BIN / "tecnorev"), "db", "status", "--help"],
        cwd=scenario.workdir,
        env=scenario.env,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0


# --------------------------------------------------------------------------- the benchmarks


def bench_heads(scenario: Scenario, options: argparse.Namespace) -> Result:
    ours, plain, ours_out, plain_out = measure_pair(
        scenario.ours("heads"), scenario.plain("heads"), scenario.workdir, options
    )
    output = compare_text(ours_out.stdout, plain_out.stdout)
    return Result(scenario.label, scenario.revisions, "heads", ours, plain, output)


def bench_status(scenario: Scenario, options: argparse.Namespace, database: Path) -> Result:
    result = Result(scenario.label, scenario.revisions, "status (vs current)")
    if not status_registered(scenario):
        result.output = "skipped: `tecnorev db status` is not registered yet"
        return result
    url = f"sqlite:///{database}"
    result.ours, result.plain, _, plain_out = measure_pair(
        scenario.ours("status", DATABASE_URL=url),
        scenario.plain("current", DATABASE_URL=url),
        scenario.workdir,
        options,
    )
    as_json = run_once(scenario.ours("status", "--json", DATABASE_URL=url), scenario.workdir)[1]
    heads = run_once(scenario.plain("heads"), scenario.workdir)[1]
    result.output = compare_status(as_json.stdout, plain_out.stdout, heads.stdout)
    return result


def bench_upgrade_sql(scenario: Scenario, options: argparse.Namespace) -> Result:
    args = ("upgrade", "heads", "--sql")
    ours, plain, ours_out, plain_out = measure_pair(
        scenario.ours(*args), scenario.plain(*args), scenario.workdir, options
    )
    output = compare_sql(ours_out.stdout, plain_out.stdout)
    if (scenario.workdir / "offline.db").exists():
        output = "MISMATCH: the offline run created the database file"
    return Result(scenario.label, scenario.revisions, "upgrade heads --sql", ours, plain, output)


def bench_offline_downgrade(
    scenario: Scenario, options: argparse.Namespace, *extra: str
) -> tuple[Result, str]:
    ours, plain, ours_out, plain_out = measure_pair(
        scenario.driver("ours", *extra), scenario.driver("plain", *extra), scenario.workdir, options
    )
    name = "downgrade heads:base --sql" + (" [indexed]" if extra else "")
    output = compare_sql(ours_out.stdout, plain_out.stdout)
    return Result(scenario.label, scenario.revisions, name, ours, plain, output), ours_out.stdout


def bench_online(scenario: Scenario, options: argparse.Namespace, database: Path) -> list[Result]:
    """``upgrade heads`` from an empty SQLite file and ``downgrade base`` from a copy at heads:
    alembic's bookkeeping plus ours (ledger row, foreign-key check) and SQLite's DDL."""
    scratch = scenario.workdir / "online.db"
    url = f"sqlite:///{scratch}"

    def empty() -> None:
        scratch.unlink(missing_ok=True)

    def at_heads() -> None:
        shutil.copyfile(database, scratch)

    results = []
    for args, prepare in ((("upgrade", "heads"), empty), (("downgrade", "base"), at_heads)):
        ours, plain, ours_out, plain_out = measure_pair(
            scenario.ours(*args, DATABASE_URL=url),
            scenario.plain(*args, DATABASE_URL=url),
            scenario.workdir,
            options,
            prepare=prepare,
        )
        output = compare_steps(revisions_run(ours_out.stderr), revisions_run(plain_out.stderr))
        command = " ".join(args) + " (SQLite)"
        results.append(Result(scenario.label, scenario.revisions, command, ours, plain, output))
    return results


def compare_steps(ours: list[str], plain: list[str]) -> str:
    if ours == plain:
        return f"same {len(ours)} revisions run in the same order"
    if Counter(ours) == Counter(plain):
        return f"same {len(ours)} revisions run; independent branches in another order"
    return "MISMATCH: different revisions run"


def bench_scenario(scenario: Scenario, options: argparse.Namespace) -> list[Result]:
    print(f"\n== {scenario.label}: {scenario.modules} modules, {scenario.revisions} revisions")
    database = database_at_heads(scenario)
    results = [
        bench_heads(scenario, options),
        bench_status(scenario, options, database),
        bench_upgrade_sql(scenario, options),
    ]
    plain_order, sql = bench_offline_downgrade(scenario, options)
    results.append(plain_order)
    if not options.no_indexed:
        indexed, indexed_sql = bench_offline_downgrade(scenario, options, "--indexed")
        if TIMESTAMP.sub("", indexed_sql) != TIMESTAMP.sub("", sql):
            indexed.output = "MISMATCH: the indexed prototype changes the SQL"
        else:
            indexed.output += "; same SQL as without the prototype"
        results.append(indexed)
    if options.online:
        results.extend(bench_online(scenario, options, database))
    for result in results:
        print_result(result)
    return results


# --------------------------------------------------------------------------- reporting


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f}"


def print_result(result: Result) -> None:
    if result.ours is None or result.plain is None:
        print(f"  {result.command:<38} {result.output}")
        return
    o, p = result.ours, result.plain
    print(
        f"  {result.command:<38} ours {_ms(o.median)} ms (p90 {_ms(o.p90).strip()}, "
        f"min {_ms(o.min).strip()}, spread {o.spread:4.0%}, n={len(o.seconds)})  "
        f"plain {_ms(p.median)} ms (p90 {_ms(p.p90).strip()}, min {_ms(p.min).strip()}, "
        f"spread {p.spread:4.0%})  ours/plain {result.ratio:5.2f}"
    )
    print(f"  {'':<38} output: {result.output}")


def print_summary(results: Sequence[Result]) -> None:
    print("\n== ours vs plain alembic (median ms; ratio = ours/plain; +10% is the goal)")
    print(f"  {'command':<38} {'tree':<22} {'revs':>5} {'ours':>8} {'plain':>8} {'ratio':>6}")
    for r in results:
        if r.ours is None or r.plain is None:
            print(f"  {r.command:<38} {r.scenario:<22} {r.revisions:>5}   {r.output}")
            continue
        print(
            f"  {r.command:<38} {r.scenario:<22} {r.revisions:>5} {_ms(r.ours.median)} "
            f"{_ms(r.plain.median)} {r.ratio:6.2f}"
        )
    print_growth(results)


def print_growth(results: Sequence[Result]) -> None:
    """Growth between tree sizes.  Start-up (imports) is the same at every size, so the
    exponent is computed on the time above the smallest scenario's: 1.0 is linear, 2.0
    quadratic."""
    print("\n== growth: exponent k in time ~ revisions^k (start-up subtracted), ours | plain")
    by_command: dict[str, list[Result]] = {}
    for r in results:
        if r.ours is not None and r.plain is not None:
            by_command.setdefault(r.command, []).append(r)
    for command, rows in by_command.items():
        rows.sort(key=lambda r: r.revisions)
        if len(rows) < 3:
            continue
        base = rows[0]
        steps = []
        for a, b in itertools.pairwise(rows[1:]):
            k_ours = _exponent(a.ours.median, b.ours.median, base.ours.median, a, b)
            k_plain = _exponent(a.plain.median, b.plain.median, base.plain.median, a, b)
            steps.append(f"{a.revisions}->{b.revisions}: {k_ours} | {k_plain}")
        print(f"  {command:<38} " + "; ".join(steps))


def _exponent(t_a: float, t_b: float, t_0: float, a: Result, b: Result) -> str:
    above_a, above_b = t_a - t_0, t_b - t_0
    if above_a <= 0 or above_b <= 0:
        return "n/a"
    return f"{math.log(above_b / above_a) / math.log(b.revisions / a.revisions):.2f}"


def print_profile(scenario: Scenario) -> None:
    """Where plain alembic spends a many-module downgrade (ours runs the same code)."""
    done = subprocess.run(
        scenario.driver("plain", "--profile").argv,
        cwd=scenario.workdir,
        env=scenario.env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stderr.splitlines() if not line.startswith("INFO")]
    print(f"\n== where `downgrade heads:base --sql` spends its time at {scenario.label} (cProfile)")
    keep = False
    for line in lines:
        keep = keep or "ncalls" in line
        if keep and line.strip():
            print("  " + line.replace(str(Path(sys.executable).parents[1]), "<venv>"))


def print_import_difference(scenario: Scenario) -> None:
    """Modules `upgrade heads --sql` imports in ours and not in plain alembic (-X importtime)."""
    self_times = {}
    args = ("upgrade", "heads", "--sql")
    for tool in (scenario.ours(*args), scenario.plain(*args)):
        argv = [sys.executable, "-X", "importtime", *_as_python(tool.argv)]
        done = subprocess.run(
            argv, cwd=scenario.workdir, env=tool.env, capture_output=True, text=True
        )
        found = re.findall(r"import time:\s+(\d+) \|\s+\d+ \|\s+(\S.*)$", done.stderr, re.M)
        self_times[tool.name] = {name.strip(): int(us) for us, name in found}
    extra = {n: us for n, us in self_times["ours"].items() if n not in self_times["plain"]}
    total = sum(extra.values()) / 1000
    top = sorted(extra.items(), key=lambda item: -item[1])[:8]
    listed = ", ".join(f"{name} {us / 1000:.0f}" for name, us in top)
    print(
        f"\n== imports only ours makes for `upgrade heads --sql`: {len(extra)} modules, "
        f"{total:.0f} ms of import time (self); largest, ms: {listed}"
    )


def _as_python(argv: list[str]) -> list[str]:
    """A console script's argv as `python -c` (so -X importtime applies)."""
    script, *args = argv
    if Path(script).name == "tecnorev":
        code = "import sys; from tecnorev.core.cli import main; sys.exit(main())"
    else:
        code = "import sys; from alembic.config import main; sys.exit(main())"
    return ["-c", code, *args]


# --------------------------------------------------------------------------- main


def parse_options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200", help="generated modules per tree")
    parser.add_argument("--revisions", type=int, default=10, help="revisions per module")
    parser.add_argument("--max-runs", type=int, default=15, help="timed runs per tool at most")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per figure pair")
    parser.add_argument(
        "--online", action="store_true", help="also upgrade heads / downgrade base on SQLite files"
    )
    parser.add_argument(
        "--no-indexed", action="store_true", help="skip the indexed-bookkeeping prototype"
    )
    return parser.parse_args(argv)


def _scratch_root() -> Path:
    shm = Path("/dev/shm")  # RAM: file-system noise out of the figures where available
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="tecnorev-bench-", dir=parent))


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    base = _scratch_root()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, scratch in {base}")
    results: list[Result] = []
    try:
        scenarios = [make_scenario("installed", base, None)]
        for size in (int(s) for s in options.sizes.split(",") if s):
            tree = generate_tree(base / f"tree{size}", size, options.revisions)
            label = f"installed+{size}x{options.revisions}"
            scenarios.append(make_scenario(label, base, tree.site))
        for scenario in scenarios:
            results.extend(bench_scenario(scenario, options))
        print_import_difference(scenarios[0])  # bytecode cache warm by now
        print_profile(scenarios[-1])
        print_summary(results)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    mismatches = [r for r in results if r.output.startswith("MISMATCH")]
    for r in mismatches:
        print(f"\nOUTPUT MISMATCH in {r.command} at {r.scenario}: {r.output}")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
