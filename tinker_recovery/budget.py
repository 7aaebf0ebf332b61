"""The restart budget of a lineage: at most ``limit`` restarts within a sliding ``window_s``."""

from __future__ import annotations

import bisect
import math

from ._checks import check_int, check_seconds

__all__ = ["RestartBudget"]


class RestartBudget:
    """Counts restarts on a monotonic clock; a pure object, with no thread and no clock of its own.

    A restart at time ``r`` counts at ``now`` while ``now - window_s < r`` (the window is open at its
    old end): with ``window_s=60``, a restart at 100.0 counts at 159.9 and no longer at 160.0.
    Times may be recorded out of order (restarts read back from a journal). Only the restarts still in
    the window are kept, so the memory is bounded by ``limit`` plus the restarts of one window.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = check_int("limit", limit, minimum=1)
        check_seconds("window_s", window_s, minimum=0, inclusive=False)
        self.window_s = float(window_s)
        self._restarts: list[float] = []

    def _forget_before(self, now: float) -> None:
        if math.isnan(now):
            raise ValueError("now: must be a number of seconds, got NaN")
        cut = bisect.bisect_right(self._restarts, now - self.window_s)
        del self._restarts[:cut]

    def used(self, now: float) -> int:
        """Restarts counted in the window that ends at ``now`` (restarts after ``now`` count too)."""
        self._forget_before(now)
        return len(self._restarts)

    def spent(self, now: float) -> bool:
        """True when no restart is left in the window that ends at ``now``."""
        return self.used(now) >= self.limit

    def record(self, when: float) -> None:
        """Count one restart at ``when`` (monotonic seconds; any order). Raises ValueError on NaN."""
        if math.isnan(when):
            raise ValueError("when: must be a number of seconds, got NaN")
        bisect.insort(self._restarts, when)

    def describe(self, now: float) -> str:
        """A short text for ``exhausted``: how much of the budget is used."""
        return f"restart budget spent: {self.used(now)} of {self.limit} restarts within {self.window_s:g} s"
