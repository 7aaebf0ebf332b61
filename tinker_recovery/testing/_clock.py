"""FakeTinker's time: the injected clock plus an offset the admin API can move forward."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["ClockLike", "FakeClock"]


@runtime_checkable
class _PackageClock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> object: ...


ClockLike = Callable[[], float] | _PackageClock

MAX_EPOCH_S = 221_845_392_000.0
"""The fake's clock never passes 9000-01-01 UTC (epoch seconds), so every timestamp it serves is a
valid ``datetime``; ``advance`` refuses to go further."""


class FakeClock:
    """Wall-clock seconds (``time()``) and deadline seconds (``monotonic()``), both moved by ``advance``.

    ``source`` is None (``time.time`` and ``time.monotonic``), a callable returning epoch seconds
    (used for both readings), or a ``tinker_recovery`` clock such as ``ManualClock`` (its
    ``now().timestamp()`` and ``monotonic()``). Thread-safe.
    """

    def __init__(self, source: ClockLike | None = None) -> None:
        self._wall: Callable[[], float]
        self._mono: Callable[[], float]
        if source is None:
            self._wall, self._mono = time.time, time.monotonic
        elif isinstance(source, _PackageClock):
            clock = source
            self._wall = lambda: clock.now().timestamp()  # type: ignore[attr-defined]
            self._mono = clock.monotonic
        elif callable(source):
            self._wall = self._mono = source
        else:
            raise TypeError(
                f"clock must be a callable or a tinker_recovery Clock, got {type(source).__name__}"
            )
        self._lock = threading.Lock()
        self._offset_s = 0.0

    def time(self) -> float:
        """Epoch seconds, offset included (timestamps and checkpoint expiry)."""
        return self._wall() + self.offset_s

    def monotonic(self) -> float:
        """Seconds for deadlines inside the fake (the seq_id gap time-out), offset included."""
        return self._mono() + self.offset_s

    @property
    def offset_s(self) -> float:
        """How far ``advance`` has moved this clock ahead of its source, in seconds (0 at start)."""
        with self._lock:
            return self._offset_s

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (>= 0, finite); return the new total offset.

        Raises ValueError for a negative, infinite or non-numeric value.
        """
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not 0 <= seconds < float("inf")
        ):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        with self._lock:
            offset = self._offset_s + float(seconds)
            if self._wall() + offset > MAX_EPOCH_S:
                raise ValueError(
                    f"seconds: advancing by {seconds!r} would move the clock past the year 9000 "
                    f"(the offset may reach {MAX_EPOCH_S - self._wall():.0f} s in all)"
                )
            self._offset_s = offset
            return self._offset_s
