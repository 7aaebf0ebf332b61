"""RetryScheduler on a ManualClock: callbacks run at their exact due time, in order, and nothing a
caller schedules can kill the thread."""

from __future__ import annotations

import math
import threading

import pytest

import tinker_recovery as tr


class Fired:
    def __init__(self) -> None:
        self.keys: list[str] = []
        self._cond = threading.Condition()

    def callback(self, key: str):
        def run() -> None:
            with self._cond:
                self.keys.append(key)
                self._cond.notify_all()

        return run

    def wait(self, count: int) -> list[str]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.keys) >= count, 10), self.keys
            return list(self.keys)


@pytest.fixture
def clock():
    return tr.ManualClock(start=100.0)


@pytest.fixture
def scheduler(clock):
    s = tr.RetryScheduler(clock, name="test.scheduler")
    s.start()
    yield s
    s.shutdown(timeout=5)


def test_a_callback_runs_at_its_due_time_and_not_before(clock, scheduler):
    fired = Fired()
    scheduler.schedule(5.0, "a", fired.callback("a"))
    clock.wait_for_deadline(105.0)
    clock.advance(4.999)
    clock.wait_for_deadline(105.0)  # woke, looked again, waits for the same due time
    assert fired.keys == [] and scheduler.pending == 1
    clock.advance(0.001)
    assert fired.wait(1) == ["a"] and scheduler.pending == 0


def test_callbacks_run_in_due_order_whatever_the_order_scheduled(clock, scheduler):
    fired = Fired()
    scheduler.schedule(3.0, "late", fired.callback("late"))
    scheduler.schedule(1.0, "early", fired.callback("early"))
    scheduler.schedule(2.0, "middle", fired.callback("middle"))
    clock.wait_for_deadline(101.0)
    clock.advance(2.0)
    assert fired.wait(2) == ["early", "middle"]
    clock.wait_for_deadline(103.0)
    clock.advance(1.0)
    assert fired.wait(3) == ["early", "middle", "late"]


def test_zero_delay_runs_without_advancing(clock, scheduler):
    fired = Fired()
    scheduler.schedule(0, "now", fired.callback("now"))
    assert fired.wait(1) == ["now"]


@pytest.mark.parametrize("delay", [-1, math.nan, math.inf, -math.inf])
def test_bad_delays_are_refused_naming_the_field(scheduler, delay):
    with pytest.raises(ValueError, match="delay_s"):
        scheduler.schedule(delay, "k", lambda: None)
    with pytest.raises(TypeError, match="delay_s"):
        scheduler.schedule("1", "k", lambda: None)  # type: ignore[arg-type]


def test_a_key_is_pending_once(scheduler):
    scheduler.schedule(10, "k", lambda: None)
    with pytest.raises(ValueError, match="already scheduled"):
        scheduler.schedule(1, "k", lambda: None)


def test_a_callback_that_raises_anything_does_not_stop_the_thread(clock, scheduler):
    fired = Fired()

    def bad() -> None:
        raise SystemExit("from a callback")

    scheduler.schedule(1.0, "bad", bad)
    scheduler.schedule(2.0, "good", fired.callback("good"))
    clock.wait_for_deadline(101.0)
    clock.advance(2.0)
    assert fired.wait(1) == ["good"]


def test_a_huge_delay_on_the_real_clock_keeps_the_thread_alive():
    fired = Fired()
    s = tr.RetryScheduler(name="test.huge")
    s.start()
    try:
        s.schedule(1e13, "huge", lambda: None)  # far beyond threading.TIMEOUT_MAX
        s.schedule(0, "soon", fired.callback("soon"))
        assert fired.wait(1) == ["soon"]
        assert s.pending == 1
    finally:
        assert s.shutdown(timeout=5) == ["huge"]


def test_shutdown_returns_the_keys_that_will_never_run_in_due_order(clock, scheduler):
    scheduler.schedule(9, "b", lambda: None)
    scheduler.schedule(3, "a", lambda: None)
    assert scheduler.shutdown(timeout=5) == ["a", "b"]
    with pytest.raises(RuntimeError, match="shut down"):
        scheduler.schedule(1, "c", lambda: None)
    with pytest.raises(RuntimeError, match="after shutdown"):
        scheduler.start()
