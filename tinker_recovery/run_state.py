"""What a poll's outcome means for one run: a small, pure state machine.

``RunState.read(corrupted)`` and ``RunState.failed(error)`` turn one poll's outcome into a
``Verdict``: healthy, waiting for confirmation, corrupted, poll error, or dropped, with a reason.
No thread, no lock, no I/O; the Monitor thread is its only user.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from .errors import ApiError, NotFound

__all__ = ["AUTH_RETRY_S", "LIST_UNAVAILABLE_STATUSES", "Outcome", "RunState", "Verdict", "read_healthy"]

AUTH_RETRY_S = 60.0
"""After a 401/403 a run is polled again no sooner than this (or its interval, if longer)."""
LIST_UNAVAILABLE_STATUSES = (404, 405, 501)
"""A listing answered with one of these means the backend has no list endpoint."""


class Verdict(enum.Enum):
    HEALTHY = "healthy"
    CONFIRMING = "confirming"  # corrupted, but fewer than confirm_polls reads in a row
    CORRUPTED = "corrupted"
    ERROR = "error"  # the poll failed; the run stays watched
    DROPPED = "dropped"  # max_poll_errors 404s of the run's own GET in a row


@attrs.frozen
class Outcome:
    """A verdict and what to do about it.

    - ``report``: send ``poll_error`` (or ``detected`` for CORRUPTED); False when the same thing
      was reported already (a 401/403 after the first, a run still corrupted in detect-only use).
    - ``reason``: short text for the signal and the log line ("" when healthy).
    - ``defer_s``: the next poll no sooner than this many seconds from now (None: the interval).
    """

    verdict: Verdict
    report: bool = False
    reason: str = ""
    defer_s: float | None = None


_HEALTHY = Outcome(Verdict.HEALTHY)  # frozen: one for every healthy read


@attrs.define(weakref_slot=False)
class RunState:
    """Counters of one run's recent polls.

    - ``confirm_polls``: consecutive corrupted reads needed for CORRUPTED (>= 1).
    - ``max_poll_errors``: consecutive 404s of the run's own GET that drop it (>= 1).

    Only the run's own GET's 404 counts towards dropping: a listing's error never does, and any
    other error or any read resets the count. 401/403 is reported once, then every later one only
    logged by the caller, until a read succeeds; such a run is polled every ``AUTH_RETRY_S``.
    """

    confirm_polls: int = 1
    max_poll_errors: int = 5
    corrupted_streak: int = 0
    not_found_streak: int = 0
    auth_reported: bool = False
    corruption_reported: bool = False

    def read(self, corrupted: bool, *, confirmed: bool = False) -> Outcome:
        """The run read ``corrupted``. ``confirmed``: no confirmation needed (the caller has a
        second witness, e.g. a refused training call)."""
        self.not_found_streak = 0
        self.auth_reported = False
        if not corrupted:
            self.corrupted_streak = 0
            self.corruption_reported = False
            return _HEALTHY
        self.corrupted_streak += 1
        if self.corrupted_streak < self.confirm_polls and not confirmed:
            return Outcome(
                Verdict.CONFIRMING, reason=f"corrupted {self.corrupted_streak}/{self.confirm_polls}"
            )
        report = not self.corruption_reported
        self.corruption_reported = True
        return Outcome(Verdict.CORRUPTED, report=report, reason="corrupted")

    def failed(
        self, error: BaseException, *, interval_s: float, retry_after_s: float | None = None
    ) -> Outcome:
        """The run's own GET failed with ``error``. Never counts as corruption.

        ``retry_after_s``: the server's Retry-After (429/503), deferring the next poll."""
        status = error.status_code if isinstance(error, ApiError) else None
        name = type(error).__name__
        if isinstance(error, NotFound):
            self.not_found_streak += 1
            if self.not_found_streak >= self.max_poll_errors:
                return Outcome(
                    Verdict.DROPPED,
                    report=True,
                    reason=f"dropped from monitoring: not found for {self.not_found_streak} "
                    "consecutive polls",
                )
            return Outcome(Verdict.ERROR, report=True, reason=f"poll failed: {name}")
        self.not_found_streak = 0
        if status in (401, 403):
            report = not self.auth_reported
            self.auth_reported = True
            every = max(interval_s, AUTH_RETRY_S)
            reason = f"poll refused: HTTP {status} ({name}); polled every {every:g} s"
            return Outcome(Verdict.ERROR, report=report, reason=reason, defer_s=every)
        return Outcome(Verdict.ERROR, report=True, reason=f"poll failed: {name}", defer_s=retry_after_s)


def read_healthy(states: Iterable[RunState]) -> None:
    """``state.read(False)`` for each of ``states``, in one loop that writes only the states a
    healthy read changes: a listing reads 10,000 healthy runs a second, and a call per run was a
    fifth of the monitor thread's CPU (issue 16)."""
    for state in states:
        if (
            state.corrupted_streak
            or state.not_found_streak
            or state.auth_reported
            or state.corruption_reported
        ):
            state.corrupted_streak = state.not_found_streak = 0
            state.auth_reported = state.corruption_reported = False
