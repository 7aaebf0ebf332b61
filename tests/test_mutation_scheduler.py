"""RetryScheduler's thread, shutdown joins, exact messages and log lines (written to kill the
mutants mutmut made of scheduler.py; see docs/mutation.md)."""

from __future__ import annotations

import logging
import threading

import pytest

import tinker_recovery as tr

LOG = "tinker_recovery.scheduler"


def _thread_named(name: str) -> threading.Thread:
    (thread,) = [t for t in threading.enumerate() if t.name == name]
    return thread


def test_the_thread_is_a_named_daemon_and_shutdown_joins_it():
    s = tr.RetryScheduler(tr.ManualClock())
    s.start()
    thread = _thread_named("tinker_recovery.scheduler")
    assert thread.daemon
    assert s.shutdown(timeout=5) == []
    assert not thread.is_alive()


def test_a_given_name_names_the_thread():
    s = tr.RetryScheduler(tr.ManualClock(), name="test.named")
    s.start()
    try:
        assert _thread_named("test.named").daemon
    finally:
        s.shutdown(timeout=5)


def test_shutdown_before_start_returns_the_pending_keys():
    s = tr.RetryScheduler(tr.ManualClock())
    s.schedule(1.0, "k", lambda: None)
    assert s.shutdown(timeout=5) == ["k"]


def test_shutdown_waits_at_most_its_timeout_for_a_busy_callback():
    clock = tr.ManualClock()
    s = tr.RetryScheduler(clock, name="test.busy")
    entered, release = threading.Event(), threading.Event()

    def busy() -> None:
        entered.set()
        release.wait(30)

    s.start()
    s.schedule(0, "busy", busy)
    assert entered.wait(10)
    thread = _thread_named("test.busy")
    try:
        assert s.shutdown(timeout=0.05) == []
        assert thread.is_alive()  # returned after its timeout, the callback still running
    finally:
        release.set()
        thread.join(10)
    assert not thread.is_alive()


def test_a_callback_may_shut_its_own_scheduler_down():
    s = tr.RetryScheduler(tr.ManualClock(), name="test.self")
    results: list[object] = []
    done = threading.Event()

    def stop_from_inside() -> None:
        try:
            results.append(s.shutdown(timeout=5))
        except BaseException as error:  # the test reports it
            results.append(error)
        done.set()

    s.start()
    thread = _thread_named("test.self")
    s.schedule(0, "stop", stop_from_inside)
    assert done.wait(10)
    thread.join(10)
    assert results == [[]] and not thread.is_alive()


def test_exact_messages():
    s = tr.RetryScheduler(tr.ManualClock())
    with pytest.raises(TypeError) as info:
        s.schedule("1", "k", lambda: None)  # type: ignore[arg-type]
    assert str(info.value) == "delay_s: expected a number of seconds, got str"
    s.shutdown(timeout=5)
    with pytest.raises(RuntimeError) as info:
        s.schedule(1, "k", lambda: None)
    assert str(info.value) == "RetryScheduler: shut down"
    with pytest.raises(RuntimeError) as info:
        s.start()
    assert str(info.value) == "RetryScheduler: cannot start after shutdown"


def test_a_callback_that_raises_is_logged_with_its_traceback(caplog):
    clock = tr.ManualClock()
    s = tr.RetryScheduler(clock, name="test.raises")
    done = threading.Event()

    def bad() -> None:
        raise ValueError("from a callback")

    s.start()
    try:
        with caplog.at_level(logging.ERROR, logger=LOG):
            s.schedule(0, "bad", bad)
            s.schedule(0, "good", done.set)
            assert done.wait(10)
    finally:
        s.shutdown(timeout=5)
    (record,) = [r for r in caplog.records if r.name == LOG]
    assert record.getMessage() == f"scheduled callback {bad!r} raised; ignored"
    assert record.exc_info is not None and record.exc_info[0] is ValueError


class FailingOnceClock:
    """A clock whose first wait raises; later waits are recorded and then wait for real."""

    def __init__(self) -> None:
        self.waits = 0
        self.waited_again = threading.Event()

    def monotonic(self) -> float:
        return 0.0

    def now(self):  # pragma: no cover - not used by the scheduler
        raise AssertionError

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        self.waits += 1
        if self.waits == 1:
            raise OSError("the clock broke")
        self.waited_again.set()
        return event.wait(0.05 if timeout is None else min(timeout, 0.05))


def test_a_clock_that_raises_is_logged_and_looked_at_again_on_its_own(caplog):
    clock = FailingOnceClock()
    s = tr.RetryScheduler(clock, name="test.badclock")  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger=LOG):
        s.start()
        try:
            # nothing sets the wake event: the thread must look again after its pause by itself
            assert clock.waited_again.wait(10)
        finally:
            s.shutdown(timeout=5)
    (record,) = [r for r in caplog.records if r.name == LOG]
    assert record.getMessage() == "RetryScheduler: the clock's wait raised; looking again"
    assert record.exc_info is not None and record.exc_info[0] is OSError
