"""Clocks: where the monitor, executor and scheduler read time and wait.

``SystemClock`` is the real one. ``ManualClock`` moves only when told to, so tests of timing run
without real waiting: a thread blocked in ``wait`` wakes when ``advance`` passes its deadline.
"""

from __future__ import annotations

import math
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

__all__ = ["Clock", "SystemClock", "ManualClock", "MAX_WAIT_S", "bounded_wait_s", "remaining"]

MAX_WAIT_S = min(threading.TIMEOUT_MAX, 86_400.0 * 365)
"""The longest single wait the package asks of ``Event.wait`` (one year, or less where the platform's
``threading.TIMEOUT_MAX`` is lower). Every waiting loop in the package re-checks its condition after a
wait returns, so a wait cut to this bound only costs one more turn of the loop."""


def bounded_wait_s(timeout: float | None) -> float | None:
    """``timeout`` (seconds) made safe for ``Event.wait``: None stays None (no limit), negatives become 0,
    values above ``MAX_WAIT_S`` (infinity included) become ``MAX_WAIT_S``.

    Raises ValueError on NaN, which no wait can honour.
    """
    if timeout is None:
        return None
    if math.isnan(timeout):
        raise ValueError("timeout: must be a number of seconds, got NaN")
    return min(max(timeout, 0.0), MAX_WAIT_S)


def remaining(deadline: float | None, now: float) -> float | None:
    """Seconds from ``now`` until ``deadline`` (both on one monotonic clock), at least 0; None when
    ``deadline`` is None (no limit).

    >>> remaining(10.0, 7.5), remaining(10.0, 12.0), remaining(None, 3.0)
    (2.5, 0.0, None)
    """
    return None if deadline is None else max(0.0, deadline - now)


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
        return event.wait(bounded_wait_s(timeout))

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves on ``advance``; for tests.

    ``wait(event, timeout)`` returns when the event is set or when ``advance`` reaches the
    deadline, which it marks by setting the event: callers treat the event as "look again", never
    as the reason they woke. ``real_timeout_s`` bounds every wait in real time, so a broken test fails
    instead of hanging.

    A test advances time exactly when the threads under test are parked with one of:

    - ``wait_for_deadline(t)``: until some thread waits with deadline ``t`` (monotonic seconds), e.g.
      the retry scheduler once it has computed a retry's due time;
    - ``wait_for_waits_begun(n)``: until ``n`` waits have begun since the clock was made (a count
      that only grows, so a thread that was already waiting does not satisfy it);
    - ``wait_for_waiters(n)``: until ``n`` threads are waiting now. Beware: a thread that is always
      waiting (a scheduler) is counted too, so this alone cannot say a new wait has begun.
    """

    def __init__(
        self, start: float = 1000.0, *, wall_start: datetime | None = None, real_timeout_s: float = 30.0
    ) -> None:
        self._now = start
        self._start = start
        self._wall_start = wall_start or datetime(2026, 1, 1, tzinfo=timezone.utc)
        self._real_timeout_s = real_timeout_s
        self._cond = threading.Condition()
        self._waiters: dict[int, tuple[float, threading.Event]] = {}
        self._next_token = 0  # also the number of waits begun

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
            if timeout is not None and math.isnan(timeout):
                raise ValueError("timeout: must be a number of seconds, got NaN")
            deadline = float("inf") if timeout is None else self._now + timeout
            self._waiters[token] = (deadline, event)
            self._cond.notify_all()
        try:
            done = event.wait(self._real_timeout_s)
            if not done and self.monotonic() < deadline:
                raise TimeoutError(
                    f"ManualClock.wait: nothing advanced the clock for {self._real_timeout_s} s"
                )
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

    @property
    def waits_begun(self) -> int:
        """How many calls of ``wait`` have begun (and blocked) since the clock was made."""
        with self._cond:
            return self._next_token

    def wait_for_waits_begun(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` waits have begun; TimeoutError after ``timeout`` real seconds."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._next_token >= count, timeout):
                raise TimeoutError(f"ManualClock: {self._next_token} wait(s) begun, expected {count}")

    def wait_for_deadline(self, deadline: float, timeout: float = 10.0) -> None:
        """Block until a thread waits with exactly ``deadline`` (monotonic seconds, as ``monotonic()``
        plus the wait's time-out); TimeoutError after ``timeout`` real seconds."""

        def found() -> bool:
            return any(
                math.isclose(when, deadline, rel_tol=0, abs_tol=1e-9) for when, _ in self._waiters.values()
            )

        with self._cond:
            if not self._cond.wait_for(found, timeout):
                deadlines = sorted(when for when, _ in self._waiters.values())
                raise TimeoutError(
                    f"ManualClock: no wait with deadline {deadline}; waiting until {deadlines}"
                )

    def wait_for_waiters(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` threads are in ``wait``; TimeoutError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._waiters) >= count, timeout):
                raise TimeoutError(f"ManualClock: {len(self._waiters)} waiter(s), expected {count}")

    def __repr__(self) -> str:
        return f"ManualClock(monotonic={self.monotonic():.3f})"
