"""Requests released all at once, or sent in a flood, while a probe times an unrelated route:
what the lock storm and login flood scenarios of ``bench_api.py`` send.

Plain ``urllib`` in threads, one connection per request.  Every request has a timeout and
every wait here a deadline, so a server that stops answering ends the measurement with its
requests counted as timed out instead of hanging the run: a frozen server is one of the
outcomes these scenarios exist to show.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

TIMED_OUT = "timeout"
CONNECTION_ERROR = "connection error"
NO_ANSWER = "no answer"  # still waiting when the measurement was cut off

# no proxy from the environment: every request goes straight to the server under test
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Answer:
    status: str  # "200", "409", ..., TIMED_OUT or CONNECTION_ERROR
    seconds: float


def send(base_url: str, call: Call, *, timeout: float) -> Answer:
    request = urllib.request.Request(
        base_url + call.path, data=call.body, headers=call.headers, method=call.method
    )
    start = time.perf_counter()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read()
            status = str(response.status)
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(OSError, http.client.HTTPException):
            exc.read()
        status = str(exc.code)
    except TimeoutError:
        status = TIMED_OUT
    except urllib.error.URLError as exc:
        status = TIMED_OUT if isinstance(exc.reason, TimeoutError) else CONNECTION_ERROR
    except (OSError, http.client.HTTPException):
        status = CONNECTION_ERROR
    return Answer(status, time.perf_counter() - start)


@dataclass
class Tally:
    """What came back from a burst or a flood: an answer per request sent (NO_ANSWER for one
    still out when the measurement was cut off)."""

    answers: list[Answer]
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.answers)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(answer.status for answer in self.answers)

    @property
    def answered(self) -> list[Answer]:
        """Requests the server answered with a status, whatever it was."""
        return [a for a in self.answers if a.status.isdigit()]

    @property
    def unanswered(self) -> int:
        """Timed out, cut off, or their connection failed."""
        return self.requests - len(self.answered)

    @property
    def server_errors(self) -> int:
        return sum(a.status.startswith("5") for a in self.answered)

    def slower_than(self, seconds: float) -> int:
        return sum(a.seconds > seconds for a in self.answered)

    @property
    def max_seconds(self) -> float:
        return max((a.seconds for a in self.answered), default=0.0)

    def histogram(self) -> str:
        def order(item: tuple[str, int]) -> tuple[bool, str]:
            return (not item[0].isdigit(), item[0])

        return ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items(), key=order))


_CUT_OFF = Answer(NO_ANSWER, math.inf)


def _wait(threads: list[threading.Thread], deadline: float) -> int:
    """Wait for ``threads`` until ``deadline``; how many are still running."""
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()))
    return sum(thread.is_alive() for thread in threads)


def burst(base_url: str, calls: list[Call], *, timeout: float, limit: float) -> Tally:
    """Send every call at once, each from a thread of its own, and wait until all are answered
    or ``limit`` seconds have passed since their release.  The answers are in call order."""
    go = threading.Event()
    answers: list[Answer | None] = [None] * len(calls)

    def one(index: int, call: Call) -> None:
        go.wait()
        answers[index] = send(base_url, call, timeout=timeout)

    # daemons: a thread still waiting on a frozen server must not keep the run alive
    threads = [
        threading.Thread(target=one, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    go.set()
    _wait(threads, start + limit)
    seconds = time.perf_counter() - start
    # what arrives after this is not counted: the measurement is over
    return Tally([answer or _CUT_OFF for answer in list(answers)], seconds)


def flood(
    base_url: str,
    make_call: Callable[[random.Random], Call],
    *,
    clients: int,
    duration: float,
    timeout: float,
) -> Tally:
    """``clients`` threads, each sending its next call as soon as the previous one is
    answered, for ``duration`` seconds; then up to ``timeout`` more for the last answers."""
    lock = threading.Lock()
    answers: list[Answer] = []
    start = time.perf_counter()
    stop_sending = start + duration

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < stop_sending:
            answer = send(base_url, make_call(rng), timeout=timeout)
            with lock:
                answers.append(answer)

    threads = [
        threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(clients)
    ]
    for thread in threads:
        thread.start()
    still_out = _wait(threads, stop_sending + timeout + 1.0)
    with lock:
        got = [*answers, *[_CUT_OFF] * still_out]
    return Tally(got, min(time.perf_counter() - start, duration))


# --------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class ProbeFigures:
    """One route's latency as the probe saw it; an unanswered request counts as infinitely
    slow, so an infinite p99 says more than 1% never came back."""

    sent: int
    failed: int  # answered other than 2xx
    unanswered: int  # timed out, refused, or still out at the end
    p50: float
    p99: float
    max: float


def _percentile(ordered: list[float], p: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def figures(answers: Iterable[Answer]) -> ProbeFigures:
    answers = list(answers)
    latencies = sorted(a.seconds if a.status.isdigit() else math.inf for a in answers)
    return ProbeFigures(
        sent=len(answers),
        failed=sum(a.status.isdigit() and not a.status.startswith("2") for a in answers),
        unanswered=sum(not a.status.isdigit() for a in answers),
        p50=_percentile(latencies, 50),
        p99=_percentile(latencies, 99),
        max=latencies[-1] if latencies else 0.0,
    )


class Probe:
    """GET ``paths`` in turn every ``interval`` seconds while a measurement runs.

    Each GET has a thread of its own, sent on a fixed schedule: one that hangs does not hold
    back the next, so a stalled server shows as slow and unanswered requests, not as fewer
    samples.  On ``stop`` the requests still out get ``grace`` seconds before they are
    counted as unanswered."""

    def __init__(
        self,
        base_url: str,
        paths: list[str],
        *,
        timeout: float,
        interval: float = 0.05,
        grace: float = 2.0,
    ) -> None:
        self.base_url = base_url
        self.paths = paths
        self.timeout = timeout
        self.interval = interval
        self.grace = grace
        # per GET: its path, where its answer goes (one item once answered), its thread
        self._sent: list[tuple[str, list[Answer], threading.Thread]] = []
        self._stop = threading.Event()
        self._scheduler = threading.Thread(target=self._schedule, daemon=True)

    def _get(self, path: str, answer: list[Answer]) -> None:
        answer.append(send(self.base_url, Call("GET", path), timeout=self.timeout))

    def _schedule(self) -> None:
        turn = 0
        next_at = time.perf_counter()
        while not self._stop.is_set():
            path = self.paths[turn % len(self.paths)]
            answer: list[Answer] = []
            thread = threading.Thread(target=self._get, args=(path, answer), daemon=True)
            thread.start()
            self._sent.append((path, answer, thread))
            turn += 1
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def __enter__(self) -> Probe:
        self._scheduler.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    def stop(self) -> dict[str, list[Answer]]:
        """Every probe's answer, by path."""
        self._stop.set()
        self._scheduler.join()
        deadline = time.perf_counter() + self.grace
        for _, _, thread in self._sent:
            thread.join(max(0.0, deadline - time.perf_counter()))
        answers: dict[str, list[Answer]] = {path: [] for path in self.paths}
        for path, answer, _ in self._sent:
            answers[path].append(answer[0] if answer else _CUT_OFF)
        return answers


def probe_for(
    base_url: str, paths: list[str], seconds: float, *, timeout: float
) -> dict[str, list[Answer]]:
    """The probe alone for ``seconds``: the idle baseline."""
    with Probe(base_url, paths, timeout=timeout) as probe:
        time.sleep(seconds)
        return probe.stop()


# --------------------------------------------------------------------------- memory


def resident_kib(pid: int) -> int:
    """VmRSS of a process, 0 once it has ended."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Memory:
    """Resident memory of a server's workers, in KiB."""

    total: int = 0
    largest: int = 0  # the largest single worker

    @classmethod
    def now(cls, pids: Iterable[int]) -> Memory:
        sizes = [resident_kib(pid) for pid in pids]
        return cls(sum(sizes), max(sizes, default=0))


class MemorySampler:
    """The peak resident memory of the processes ``pids()`` returns, sampled every
    ``interval`` seconds while a measurement runs (the worker list is read again each time:
    a supervisor may replace a worker that died)."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self.peak = Memory()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now = Memory.now(self.pids())
        self.peak = Memory(max(self.peak.total, now.total), max(self.peak.largest, now.largest))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
