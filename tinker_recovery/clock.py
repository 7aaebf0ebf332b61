"""Clocks: where the monitor, executor and scheduler read time and wait.

``SystemClock`` is the real one. ``ManualClock`` moves only when told to, so tests of timing run
without real waiting: a thread blocked in ``wait`` wakes when ``advance`` passes its deadline.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock"]


class Clock(Protocol):
    """What the package needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for intervals and deadlines."""

    def now(self) -> datetime:
        """The current wall-clock time, time-zone aware (for ``expires_at`` and journal lines)."""

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds pass; return whether it is set."""


class SystemClock:
    """The real clock: ``time.monotonic``, UTC now, and ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        return event.wait(timeout)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves on ``advance``; for tests.

    ``wait(event, timeout)`` returns when the event is set or when ``advance`` reaches the
    deadline, which it marks by setting the event: callers treat the event as "look again", never
    as the reason they woke. ``real_timeout_s`` bounds every wait in real time, so a broken test fails instead of
    hanging. ``wait_for_waiters(n)`` blocks until ``n`` threads are waiting, so a test can advance
    time exactly when the threads under test are parked.
    """

    def __init__(self, start: float = 1000.0, *, wall_start: datetime | None = None,
                 real_timeout_s: float = 30.0) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._real_timeout_s = real_timeout_s
        self._cond = threading.Condition()
        self._waiters: dict[int, tuple[float, threading.Event]] = {}
        self._next_token = 0

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def now(self) -> datetime:
        with self._cond:
            return self._wall_start + timedelta(seconds=self._now - self._start)

    def wait(self, event: threading.Event, timeout: float | None) -> bool:
        with self._cond:
            if timeout is not None and timeout <= 0:
                return event.is_set()
            token = self._next_token
            self._next_token += 1
            deadline = float("inf") if timeout is None else self._now + timeout
            self._waiters[token] = (deadline, event)
            self._cond.notify_all()
        try:
            done = event.wait(self._real_timeout_s)
            if not done and self.monotonic() < deadline:
                raise TimeoutError(f"ManualClock.wait: nothing advanced the clock for {self._real_timeout_s} s")
            return event.is_set()
        finally:
            with self._cond:
                self._waiters.pop(token, None)
                self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every waiter whose deadline has passed."""
        if seconds < 0:
            raise ValueError(f"seconds: must be >= 0, got {seconds}")
        with self._cond:
            self._now += seconds
            for deadline, event in list(self._waiters.values()):
                if deadline <= self._now:
                    event.set()

    def waiters(self) -> int:
        """How many threads are blocked in ``wait`` now."""
        with self._cond:
            return len(self._waiters)

    def wait_for_waiters(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` threads are in ``wait``; TimeoutError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._waiters) >= count, timeout):
                raise TimeoutError(f"ManualClock: {len(self._waiters)} waiter(s), expected {count}")

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self.monotonic():.3f})"
