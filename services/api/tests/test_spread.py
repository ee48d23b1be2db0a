"""The workers' shared count of keep-alive connections (``tecnorev.api.spread``): processes of
their own, each holding a slot.  (Forked, so that their targets may live in this file; the
server's own workers, spawned by uvicorn, are tested in tests/test_overload_limits.py.)"""

from __future__ import annotations

import multiprocessing
from typing import Any

from tecnorev.api.spread import Spread

BOUND = 30.0  # seconds any process of these tests may take
forked = multiprocessing.get_context("fork")


def _worker(spread: Spread, connections: int, held: Any, leave: Any) -> None:
    spread.holds(connections)
    held.set()
    leave.wait(BOUND)


def _start(spread: Spread, connections: int) -> tuple[Any, Any]:
    held, leave = forked.Event(), forked.Event()
    process = forked.Process(target=_worker, args=(spread, connections, held, leave))
    process.start()
    assert held.wait(BOUND), "the worker never published its connections"
    return process, leave


def _stop(process: Any, leave: Any) -> None:
    leave.set()
    process.join(BOUND)
    assert process.exitcode == 0


def test_a_worker_over_its_share_closes_the_extra_connections_only():
    spread = Spread(2)
    other, leave = _start(spread, 2)
    try:
        spread.holds(6)  # 8 in all: a share of 4
        assert spread.over(6)
        spread.closing(1)
        assert spread.over(6)  # 5 once the one being closed is gone
        spread.closing(1)
        assert not spread.over(6)  # 4: the rest stay
        spread.closing(-2)
        spread.holds(4)  # until their clients come back: 4 of 6, a share of 3
        assert spread.over(4)
        spread.holds(3)  # 3 of 5: a share of 3
        assert not spread.over(3)
    finally:
        _stop(other, leave)


def test_a_restarted_worker_takes_the_slot_of_the_one_that_died():
    spread = Spread(2)
    dead, leave = _start(spread, 9)
    _stop(dead, leave)
    alive, leave = _start(spread, 1)  # in the dead worker's slot: its 9 are forgotten
    try:
        spread.holds(3)  # 4 in all: a share of 2
        assert spread.over(3)
    finally:
        _stop(alive, leave)


def _holding_thirty(spread: Spread, answer: Any) -> None:
    spread.holds(30)
    answer.put(spread.over(30))


def _without_a_slot(spread: Spread) -> bool:
    """Whether a new worker holding 30 connections keeps them all (no slot, or over none)."""
    answer = forked.Queue()
    worker = forked.Process(target=_holding_thirty, args=(spread, answer))
    worker.start()
    kept = answer.get(timeout=BOUND) is False
    worker.join(BOUND)
    assert worker.exitcode == 0
    return kept


def test_a_worker_beyond_the_planned_number_keeps_its_connections(caplog):
    """One added with SIGTTIN beyond ``--workers`` has no slot: it never closes a connection
    for the others' sake, and is not counted in their share."""
    spread = Spread(1)
    worker, leave = _start(spread, 1)  # alive, in the one slot
    try:
        assert _without_a_slot(spread)
        spread.holds(1)  # this process, in the same position: it says why
        assert "more workers than the 1 planned" in caplog.text
        assert not spread.over(1)
    finally:
        _stop(worker, leave)


def test_a_worker_that_cannot_get_the_slots_lock_goes_without_a_slot(monkeypatch):
    """The lock is held a few reads long; a worker killed inside it must not stall the next
    one's first connection: the wait for it is bounded, then the worker keeps its own."""
    from tecnorev.api import spread as module

    monkeypatch.setattr(module, "CLAIM_WAIT", 0.1)
    spread = Spread(2)
    lock = spread._owners.get_lock()
    assert lock.acquire(timeout=BOUND)  # as a worker killed while claiming would leave it
    try:
        assert _without_a_slot(spread)
    finally:
        lock.release()
