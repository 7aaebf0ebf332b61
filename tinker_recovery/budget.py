"""The restart budget of a lineage: at most ``limit`` restarts within a sliding ``window_s``."""

from __future__ import annotations

from collections import deque

__all__ = ["RestartBudget"]


class RestartBudget:
    """Counts restarts on a monotonic clock; a pure object, with no thread and no clock of its own."""

    def __init__(self, limit: int, window_s: float) -> None:
        if limit < 1:
            raise ValueError(f"limit: must be at least 1, got {limit}")
        if window_s <= 0:
            raise ValueError(f"window_s: must be positive, got {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._restarts: deque[float] = deque()

    def _forget_before(self, now: float) -> None:
        while self._restarts and self._restarts[0] <= now - self.window_s:
            self._restarts.popleft()

    def used(self, now: float) -> int:
        """Restarts counted in the window that ends at ``now``."""
        self._forget_before(now)
        return len(self._restarts)

    def spent(self, now: float) -> bool:
        """True when no restart is left in the window that ends at ``now``."""
        return self.used(now) >= self.limit

    def record(self, now: float) -> None:
        """Count one restart at ``now``."""
        self._restarts.append(now)

    def describe(self, now: float) -> str:
        """A short text for ``exhausted``: how much of the budget is used."""
        return f"restart budget spent: {self.used(now)} of {self.limit} restarts within {self.window_s:g} s"
