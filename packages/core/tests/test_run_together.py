"""``run_together``, the start line of the race tests: a thread that fails, or never arrives,
ends the race within its timeout, and the test sees why."""

from __future__ import annotations

import threading
import time

import pytest

from tecnorev.testing.core import run_together

THREADS = 8


class CannotConnect(Exception):
    pass


@pytest.mark.timeout(30)
def test_the_threads_leave_the_start_line_together_and_each_result_comes_back_in_order():
    arrived = []

    def work(i, start):
        arrived.append(i)
        start()
        return len(arrived)  # read after the start line: everyone had arrived

    assert run_together(THREADS, work) == [THREADS] * THREADS


@pytest.mark.timeout(30)
def test_a_thread_failing_before_the_start_line_fails_the_race_at_once_with_its_error():
    racers = []

    def work(i, start):
        racers.append(threading.current_thread())
        if i == 3:
            raise CannotConnect("too many clients already")
        start()
        return i

    began = time.monotonic()
    with pytest.raises(CannotConnect, match="too many clients already") as raised:
        run_together(THREADS, work, timeout=60)
    assert time.monotonic() - began < 10  # the others were released, not timed out
    assert "(raised in thread 3 of the 8 run together)" in raised.value.__notes__
    assert len(racers) == THREADS
    assert not any(racer.is_alive() for racer in racers)


@pytest.mark.timeout(30)
def test_a_failure_after_the_start_line_is_raised_once_the_others_have_finished():
    finished = []

    def work(i, start):
        start()
        if i == 0:
            raise AssertionError("oversold")
        time.sleep(0.2)
        finished.append(i)

    with pytest.raises(AssertionError, match="oversold"):
        run_together(THREADS, work)
    assert sorted(finished) == list(range(1, THREADS))


@pytest.mark.timeout(30)
def test_a_thread_that_never_arrives_ends_the_race_at_the_timeout_showing_where_it_waits():
    release = threading.Event()

    def never_connects():
        release.wait(20)

    def work(i, start):
        if i == 0:
            never_connects()
        start()

    began = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"1 of 8 threads still running after 0\.5 s") as err:
            run_together(THREADS, work, timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - began < 5
    assert "run_together-0" in str(err.value)
    assert "in never_connects" in str(err.value)
