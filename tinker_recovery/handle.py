"""The run handle: a training loop's view of one watched run."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .recovery import Recovery

__all__ = ["RunHandle"]


class RunHandle:
    """A training loop's view of one watched run, safe to read from any thread without locking.

    - ``client``: the training client to use now: the recovered one once a recovery completed.
    - ``run_id``: the run being watched now (it follows the recovered run).
    - ``take_recovery()``: the newest recovery since the loop last asked, or None.
    - ``recovering``: True while a recovery of this run is queued, running or waiting to retry.
    - ``wait(timeout)``: block until no recovery is in flight.
    - ``wait_for_recovery(timeout)``: block until a recovery not yet taken is there.
    - ``poll_now()``: have the monitor poll the run at once (e.g. after a refused training call).
    - ``error``: the last error once recovery was given up (``exhausted``), else None.
    - ``watching``: False once the run is no longer monitored (stopped, dropped, or exhausted).
    """

    def __init__(
        self,
        run_id: str,
        client: Any,
        stop: Callable[[str], Any] | None = None,
        poll: Callable[[str], Any] | None = None,
    ) -> None:
        self.original_run_id = run_id
        self._run_id = run_id
        self._client = client
        self._stop = stop
        self._poll = poll
        self._cond = threading.Condition()
        self._recovering = False
        self._watching = True
        self._error: BaseException | None = None
        self._unseen: Recovery | None = None
        self._history: list[Recovery] = []

    def __repr__(self) -> str:
        with self._cond:
            state = "recovering" if self._recovering else "watching" if self._watching else "stopped"
            return f"RunHandle(run_id={self._run_id!r}, {state}, recoveries={len(self._history)})"

    @property
    def run_id(self) -> str:
        with self._cond:
            return self._run_id

    @property
    def client(self) -> Any:
        with self._cond:
            return self._client

    @property
    def recovering(self) -> bool:
        with self._cond:
            return self._recovering

    @property
    def watching(self) -> bool:
        with self._cond:
            return self._watching

    @property
    def error(self) -> BaseException | None:
        with self._cond:
            return self._error

    @property
    def recoveries(self) -> list[Recovery]:
        """Every recovery of this lineage so far, oldest first."""
        with self._cond:
            return list(self._history)

    @property
    def last_recovery(self) -> Recovery | None:
        with self._cond:
            return self._history[-1] if self._history else None

    def take_recovery(self) -> Recovery | None:
        """The newest recovery the loop has not taken yet (then cleared), or None."""
        with self._cond:
            recovery, self._unseen = self._unseen, None
            return recovery

    def wait(self, timeout: float | None = None) -> bool:
        """Block while a recovery is in flight; True once none is, False if ``timeout`` passed."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._recovering, timeout)

    def wait_for_recovery(self, timeout: float | None = None) -> Recovery:
        """Block until a recovery the loop has not taken yet is there, and return it.

        It stays there for ``take_recovery()``. Raises the last error if recovery was given up, and
        TimeoutError if ``timeout`` seconds (None: no limit) pass first. Call ``poll_now()`` before
        it when the service has just refused a training call, so detection need not wait an interval.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._unseen is not None or self._error is not None, timeout)
            if self._unseen is not None:
                return self._unseen
            if self._error is not None:
                raise self._error
            raise TimeoutError(f"no recovery of {self._run_id} within {timeout} s")

    def poll_now(self) -> bool:
        """Ask the monitor to poll this run at once instead of at the next interval (or right after
        a poll in flight); False if the run is not being watched."""
        return bool(self._poll is not None and self._poll(self.run_id))

    def stop(self) -> None:
        """Stop monitoring this run."""
        if self._stop is not None:
            self._stop(self.run_id)

    # --- called by the monitor ------------------------------------------------------------------

    def _began(self) -> None:
        with self._cond:
            self._recovering = True

    def _completed(self, recovery: Recovery, *, watching: bool = True) -> None:
        with self._cond:
            self._history.append(recovery)
            self._unseen = recovery
            self._client = recovery.client
            if recovery.new_run_id is not None:
                self._run_id = recovery.new_run_id
            self._recovering = False
            self._watching = self._watching and watching
            self._cond.notify_all()

    def _failed(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._recovering = False
            self._watching = False
            self._cond.notify_all()

    def _stopped(self) -> None:
        with self._cond:
            self._watching = False
            self._cond.notify_all()
