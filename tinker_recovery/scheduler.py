"""One thread that runs short callbacks after a delay: the waiting room for every pending retry."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Callable, Hashable
from typing import Protocol

from .clock import Clock, SystemClock

__all__ = ["Scheduler", "RetryScheduler"]

log = logging.getLogger("tinker_recovery.scheduler")


class Scheduler(Protocol):
    """What the executor needs to wait out a retry's backoff without holding a worker."""

    def start(self) -> None: ...

    def schedule(self, delay_s: float, key: Hashable, callback: Callable[[], None]) -> None:
        """Run ``callback`` once, ``delay_s`` seconds from now, unless ``key`` is cancelled first."""

    def shutdown(self, timeout: float | None = None) -> list[Hashable]:
        """Stop; return the keys of the callbacks that will now never run."""


class RetryScheduler:
    """Runs each scheduled callback on one daemon thread when its time comes.

    Callbacks must be quick (the executor's only enqueues a request); one that raises is logged
    and the thread goes on. ``clock`` is injectable for tests (see ``ManualClock``).
    """

    def __init__(self, clock: Clock | None = None, *, name: str = "tinker_recovery.scheduler") -> None:
        self._clock = clock or SystemClock()
        self._name = name
        self._heap: list[tuple[float, int, Hashable]] = []
        self._callbacks: dict[Hashable, Callable[[], None]] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; calling it again does nothing."""
        with self._lock:
            if self._stopping:
                raise RuntimeError("RetryScheduler: cannot start after shutdown")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def schedule(self, delay_s: float, key: Hashable, callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``delay_s`` seconds (a finite number >= 0; 0 runs it at the next turn)
        have passed on the clock. A key may be pending only once.

        Raises ValueError for a negative, NaN or infinite delay or a key already pending, and
        RuntimeError after ``shutdown``. A delay too long for ``Event.wait`` is waited in turns
        (see ``clock.MAX_WAIT_S``), so it can never kill the thread.
        """
        if isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)):
            raise TypeError(f"delay_s: expected a number of seconds, got {type(delay_s).__name__}")
        if not math.isfinite(delay_s) or delay_s < 0:
            raise ValueError(f"delay_s: must be a finite number >= 0, got {delay_s}")
        with self._lock:
            if self._stopping:
                raise RuntimeError("RetryScheduler: shut down")
            if key in self._callbacks:
                raise ValueError(f"key {key!r} is already scheduled")
            self._callbacks[key] = callback
            heapq.heappush(self._heap, (self._clock.monotonic() + delay_s, next(self._order), key))
        self._wake.set()

    @property
    def pending(self) -> int:
        """How many callbacks are waiting."""
        with self._lock:
            return len(self._callbacks)

    def shutdown(self, timeout: float | None = None) -> list[Hashable]:
        """Stop the thread (waiting at most ``timeout``); return the keys that will never run."""
        with self._lock:
            self._stopping = True
            cancelled = [key for _, _, key in sorted(self._heap) if key in self._callbacks]
            self._callbacks.clear()
            self._heap.clear()
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return cancelled

    def _next_due(self) -> tuple[float | None, list[Callable[[], None]]]:
        """Pop the callbacks now due; return them and the time until the next one."""
        due: list[Callable[[], None]] = []
        with self._lock:
            now = self._clock.monotonic()
            while self._heap:
                when, _, key = self._heap[0]
                if key not in self._callbacks:
                    heapq.heappop(self._heap)
                    continue
                if when > now:
                    return when - now, due
                heapq.heappop(self._heap)
                due.append(self._callbacks.pop(key))
            return None, due

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                return
            delay, due = self._next_due()
            for callback in due:
                try:
                    callback()
                except BaseException:
                    log.error("scheduled callback %r raised; ignored", callback, exc_info=True)
            if not due:
                try:
                    self._clock.wait(self._wake, delay)
                except Exception:  # a clock that fails must not stop every retry for ever
                    log.error("RetryScheduler: the clock's wait raised; looking again", exc_info=True)
                    self._wake.wait(1.0)
