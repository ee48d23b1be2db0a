"""Closed-loop HTTP load: N keep-alive clients, each sending its next request as soon as the
previous answer arrived, for a fixed time.  Two generators give the same figures:

* ``wrk`` (C, one thread) when it is installed: a generated Lua script builds the requests;
* otherwise this module's own asyncio client (one process, raw HTTP/1.1, no HTTP library),
  run as a subprocess: ``python bench/load.py < spec.json`` prints the result as JSON.

Both are kept cheap on purpose: on a small machine every CPU second the generator spends is
taken from the server under test, so the generator's CPU time is measured and reported too.

Two kinds of load are known, described by plain data so both generators build the same
requests: ``ListLoad`` (GET one of a list of paths at random, anonymous or with a bearer
token) and ``OrderLoad`` (POST an order
of ``lines`` distinct products, one unit each, as a random customer).  An order's products are
picked as in ``bench/sql/place_order.sql``: a random start and two random steps of at most a
third of the range, so the three are always distinct.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ORDERS_PATH = "/api/v1/sales/orders"


@dataclass(frozen=True)
class ListLoad:
    paths: list[str]
    token: str = ""  # a bearer token sent with every request; empty: anonymous
    gzip: bool = False  # ask for gzip (Accept-Encoding), as browsers and HTTP libraries do


@dataclass(frozen=True)
class OrderLoad:
    tokens: list[str]  # bearer tokens of customers holding orders:place
    first_product: int  # the products ordered are first_product .. first_product + products - 1
    products: int
    branch_id: int
    lines: int = 3


Load = ListLoad | OrderLoad


@dataclass
class LoadResult:
    tool: str
    requests: int
    errors: int  # connection errors and answers other than 2xx
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_seconds: float = 0.0  # the generator's own CPU time
    statuses: dict[str, int] = field(default_factory=dict)  # python generator only

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_path() -> str | None:
    return shutil.which("wrk")


def run(
    load: Load,
    *,
    base_url: str,
    clients: int,
    duration: float,
    tool: str = "auto",
) -> LoadResult:
    """Run ``load`` against ``base_url`` (``http://host:port``); ``tool``: auto, wrk or python."""
    if tool == "auto":
        tool = "wrk" if wrk_path() else "python"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if tool == "wrk":
        result = _run_wrk(load, base_url=base_url, clients=clients, duration=duration)
    elif tool == "python":
        result = _run_python(load, base_url=base_url, clients=clients, duration=duration)
    else:
        raise ValueError(f"unknown load generator {tool!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result.cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def _describe(load: Load) -> dict[str, object]:
    return {"kind": type(load).__name__, **asdict(load)}


# --------------------------------------------------------------------------- wrk

_WRK_SCRIPT = """\
local kind = "%(kind)s"
local paths = {%(paths)s}
local list_headers = {%(list_headers)s}
local tokens = {%(tokens)s}
local first, count, branch, lines = %(first)d, %(count)d, %(branch)d, %(lines)d
local seed = 0

function setup(thread)
  seed = seed + 1
  thread:set("seed", seed)
end

function init(args)
  math.randomseed(os.time() * 100 + (seed or 0))
end

local function order_body()
  local step = math.max(1, math.floor(count / lines))
  local index = math.random(0, count - 1)
  local picked = {index}
  for i = 2, lines do
    index = (index + math.random(1, step)) %% count
    picked[i] = index
  end
  table.sort(picked)
  local items = {}
  for i, p in ipairs(picked) do
    items[i] = string.format('{"product_id":%%d,"quantity":1}', first + p)
  end
  return string.format('{"branch_id":%%d,"items":[%%s]}', branch, table.concat(items, ","))
end

function request()
  if kind == "ListLoad" then
    return wrk.format("GET", paths[math.random(#paths)], list_headers)
  end
  local headers = {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
  }
  return wrk.format("POST", "%(orders)s", headers, order_body())
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-RESULT {"requests":%%d,"duration_us":%%d,"errors":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d}\\n',
    summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def _lua_strings(values: list[str]) -> str:
    for value in values:
        if not re.fullmatch(r"[ !#-\[\]-~]*", value):  # printable ASCII, no quote or backslash
            raise ValueError(f"cannot embed {value!r} in a Lua string")
    return ",".join(f'"{value}"' for value in values)


def _run_wrk(load: Load, *, base_url: str, clients: int, duration: float) -> LoadResult:
    order = load if isinstance(load, OrderLoad) else None
    token = load.token if isinstance(load, ListLoad) else ""
    headers = [f'["Authorization"] = {_lua_strings([f"Bearer {token}"])}'] if token else []
    if isinstance(load, ListLoad) and load.gzip:
        headers.append('["Accept-Encoding"] = "gzip"')
    script = _WRK_SCRIPT % {
        "kind": type(load).__name__,
        "paths": _lua_strings(load.paths if isinstance(load, ListLoad) else []),
        "list_headers": ", ".join(headers),
        "tokens": _lua_strings(order.tokens if order else []),
        "first": order.first_product if order else 0,
        "count": order.products if order else 0,
        "branch": order.branch_id if order else 0,
        "lines": order.lines if order else 0,
        "orders": ORDERS_PATH,
    }
    with tempfile.TemporaryDirectory(prefix="tecnorev-wrk-") as tmp:
        path = Path(tmp) / "load.lua"
        path.write_text(script, encoding="utf-8")
        # One thread: wrk's event loop keeps up with far more than this server answers, and a
        # second thread would take CPU from the server on a two-core machine.
        command = [
            "wrk", "-t1", f"-c{clients}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
            "-s", str(path), base_url,
        ]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    raw = json.loads(line.removeprefix("WRK-RESULT "))
    return LoadResult(
        tool="wrk",
        requests=raw["requests"],
        errors=raw["errors"],
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


# --------------------------------------------------------------------------- python


def _run_python(load: Load, *, base_url: str, clients: int, duration: float) -> LoadResult:
    spec = {"load": _describe(load), "base_url": base_url, "clients": clients}
    spec["duration"] = duration
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve())],
        input=json.dumps(spec),
        check=True,
        capture_output=True,
        text=True,
    )
    raw = json.loads(completed.stdout)
    return LoadResult(tool="python", **raw)


def _request_maker(load: dict[str, object], host: str) -> Callable[[], bytes]:
    rng = random.Random()
    if load["kind"] == "ListLoad":
        token = f"Authorization: Bearer {load['token']}\r\n" if load.get("token") else ""
        if load.get("gzip"):
            token += "Accept-Encoding: gzip\r\n"
        requests = [
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{token}\r\n".encode() for path in load["paths"]
        ]
        return lambda: rng.choice(requests)

    first, count, lines = load["first_product"], load["products"], load["lines"]
    branch_id, tokens = load["branch_id"], load["tokens"]
    step = max(1, count // lines)

    def order() -> bytes:
        index = rng.randrange(count)
        picked = [index]
        for _ in range(lines - 1):
            index = (index + rng.randint(1, step)) % count
            picked.append(index)
        items = ",".join(f'{{"product_id":{first + p},"quantity":1}}' for p in sorted(picked))
        body = f'{{"branch_id":{branch_id},"items":[{items}]}}'.encode()
        head = (
            f"POST {ORDERS_PATH} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {rng.choice(tokens)}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    return order


async def _client(
    host: str,
    port: int,
    make: Callable[[], bytes],
    deadline: float,
    latencies: list[float],
    statuses: Counter[str],
) -> None:
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.perf_counter() < deadline:
        try:
            if connection is None:
                connection = await asyncio.open_connection(host, port)
            reader, writer = connection
            start = time.perf_counter()
            writer.write(make())
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                raise ConnectionError("an answer without Content-Length")
            await reader.readexactly(int(length.group(1)))
            latencies.append(time.perf_counter() - start)
            statuses[head[9:12].decode()] += 1
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            statuses["connection error"] += 1
            if connection is not None:
                connection[1].close()
            connection = None
    if connection is not None:
        connection[1].close()


async def _drive(spec: dict[str, object]) -> dict[str, object]:
    host_port = str(spec["base_url"]).removeprefix("http://").rstrip("/")
    host, _, port = host_port.partition(":")
    make = _request_maker(spec["load"], host_port)  # type: ignore[arg-type]
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    start = time.perf_counter()
    deadline = start + float(spec["duration"])  # type: ignore[arg-type]
    await asyncio.gather(
        *(
            _client(host, int(port or 80), make, deadline, latencies, statuses)
            for _ in range(int(spec["clients"]))  # type: ignore[call-overload]
        )
    )
    seconds = time.perf_counter() - start
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))] * 1000

    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    return {
        "requests": sum(statuses.values()),
        "errors": sum(statuses.values()) - ok,
        "seconds": seconds,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "statuses": dict(statuses),
    }


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop  # the server's dependencies bring it; plain asyncio works too

        runner: Callable[..., dict[str, object]] = uvloop.run
    except ImportError:
        runner = asyncio.run
    print(json.dumps(runner(_drive(spec))))


if __name__ == "__main__":
    main()
