"""The run handle: a training loop's view of one watched run.

Memory per handle is kept small (issue 16): no lock or condition per handle. Every handle shares
one module lock, held only for a few attribute reads or writes; a thread that waits creates an
Event for as long as it waits, and a coroutine that waits a Future of its own loop, woken with
``loop.call_soon_threadsafe`` (no thread per waiter, and the event loop is never blocked).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import RecoveryError
from .recovery import Recovery

__all__ = ["RunHandle"]

log = logging.getLogger("tinker_recovery.handle")

_LOCK = threading.Lock()
"""Guards the state of every handle. Held only around attribute reads and writes, never a wait."""


class _ThreadWaiter:
    """A thread blocked in ``wait`` or ``wait_for_recovery``."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


class _AsyncWaiter:
    """A coroutine awaiting ``wait_async`` or ``wait_for_recovery_async`` on its event loop."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.future)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            log.debug("a handle waiter's event loop is closed; not woken")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _check_timeout(timeout: float | None) -> float | None:
    """``timeout`` as seconds to wait: None (or above ``threading.TIMEOUT_MAX``, e.g. inf) means no
    limit, 0 or less means do not wait. NaN or a non-number raises."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout: expected seconds (a number) or None, got {type(timeout).__name__}")
    if math.isnan(timeout):
        raise ValueError("timeout: must be a number of seconds or None, got nan")
    if timeout > threading.TIMEOUT_MAX:
        return None
    return max(0.0, float(timeout))


class RunHandle:
    """A training loop's view of one watched run, safe to read from any thread.

    - ``client``: the training client to use now: the recovered one once a recovery completed.
    - ``run_id``: the run being watched now (it follows the recovered run).
    - ``original_run_id``: the run the handle was made for.
    - ``take_recovery()``: the newest recovery since the loop last asked, or None.
    - ``recovering``: True while a recovery of this run is queued, running or waiting to retry.
    - ``wait(timeout)`` / ``await wait_async(timeout)``: until no recovery is in flight.
    - ``wait_for_recovery(timeout)`` / ``await wait_for_recovery_async(timeout)``: until a recovery
      not yet taken is there.
    - ``poll_now()``: have the monitor poll the run at once (e.g. after a refused training call).
    - ``check()``: ask the monitor whether the run is corrupted now (one round trip).
    - ``error``: why the run is no longer recovered: the last error once recovery was given up
      (``exhausted``) or the run was dropped by the monitor; else None.
    - ``watching``: False once the run is no longer monitored (stopped, dropped, or given up).
    - ``recoveries``: the last ``HISTORY_LIMIT`` (100) recoveries of the lineage, oldest first;
      ``recovery_count`` counts them all.

    ``stop``, ``poll`` and ``check`` are the monitor's callables, each given the current run id.
    """

    HISTORY_LIMIT = 100
    """How many recoveries ``recoveries`` keeps (the newest); older ones are let go with their clients."""

    __slots__ = (
        "__weakref__",
        "_check",
        "_client",
        "_count",
        "_error",
        "_history",
        "_poll",
        "_recovering",
        "_run_id",
        "_stop",
        "_unseen",
        "_waiters",
        "_was_dropped",
        "_watching",
        "original_run_id",
    )

    def __init__(
        self,
        run_id: str,
        client: Any,
        stop: Callable[[str], Any] | None = None,
        poll: Callable[[str], Any] | None = None,
        check: Callable[[str], Any] | None = None,
    ) -> None:
        self.original_run_id = run_id
        self._run_id = run_id
        self._client = client
        self._stop = stop
        self._poll = poll
        self._check = check
        self._recovering = False
        self._watching = True
        self._was_dropped = False
        self._error: BaseException | None = None
        self._unseen: Recovery | None = None
        self._history: list[Recovery] | None = None  # made at the first recovery
        self._count = 0
        self._waiters: list[_ThreadWaiter | _AsyncWaiter] | None = None  # only while someone waits

    def __repr__(self) -> str:
        with _LOCK:
            if self._recovering:
                state = "recovering"
            elif self._was_dropped:
                state = "dropped"
            elif self._error is not None:
                state = "given up"
            else:
                state = "watching" if self._watching else "stopped"
            return f"RunHandle(run_id={self._run_id!r}, {state}, recoveries={self._count})"

    # --- what the loop reads ----------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        with _LOCK:
            return self._run_id

    @property
    def client(self) -> Any:
        with _LOCK:
            return self._client

    @property
    def recovering(self) -> bool:
        with _LOCK:
            return self._recovering

    @property
    def watching(self) -> bool:
        with _LOCK:
            return self._watching

    @property
    def error(self) -> BaseException | None:
        with _LOCK:
            return self._error

    @property
    def recoveries(self) -> list[Recovery]:
        """The last ``HISTORY_LIMIT`` recoveries of this lineage, oldest first (a new list)."""
        with _LOCK:
            return list(self._history or ())

    @property
    def recovery_count(self) -> int:
        """How many recoveries of this lineage completed, including those ``recoveries`` let go."""
        with _LOCK:
            return self._count

    @property
    def last_recovery(self) -> Recovery | None:
        with _LOCK:
            return self._history[-1] if self._history else None

    def take_recovery(self) -> Recovery | None:
        """The newest recovery the loop has not taken yet (then cleared), or None."""
        with _LOCK:
            recovery, self._unseen = self._unseen, None
            return recovery

    # --- waits ------------------------------------------------------------------------------------

    def _settled(self) -> bool:
        return not self._recovering  # _dropped and _failed clear it too

    def _arrived(self) -> bool:
        return self._unseen is not None or self._error is not None

    def _after_wait(self, ok: bool) -> bool:
        """``wait``'s answer (lock held): raises the drop error, else whether it settled."""
        if self._was_dropped and self._error is not None:
            raise self._error
        return ok

    def _recovery_or_raise(self, timeout: float | None) -> Recovery:
        """``wait_for_recovery``'s answer once its wait ended (lock held)."""
        if self._unseen is not None:
            return self._unseen
        if self._error is not None:
            raise self._error
        raise TimeoutError(f"no recovery of {self._run_id} within {timeout} s")

    def wait(self, timeout: float | None = None) -> bool:
        """Block while a recovery is in flight; True once none is, False if ``timeout`` seconds
        passed first (None: no limit; 0: do not block).

        Raises the drop error at once when the monitor dropped the run (see ``error``); a run whose
        recovery was given up returns True (read ``error``). TypeError/ValueError for a bad timeout.
        """
        ok = self._wait(self._settled, _check_timeout(timeout))
        with _LOCK:
            return self._after_wait(ok)

    def wait_for_recovery(self, timeout: float | None = None) -> Recovery:
        """Block until a recovery the loop has not taken yet is there, and return it.

        It stays there for ``take_recovery()``. Raises at once the error saying why when recovery
        was given up or the run was dropped, and TimeoutError if ``timeout`` seconds (None: no
        limit) pass first. Call ``poll_now()`` before it when the service has just refused a
        training call, so detection need not wait an interval.
        """
        seconds = _check_timeout(timeout)
        self._wait(self._arrived, seconds)
        with _LOCK:
            return self._recovery_or_raise(timeout)

    async def wait_async(self, timeout: float | None = None) -> bool:
        """``wait`` for asyncio: the same answers, awaited without blocking the event loop."""
        ok = await self._wait_async(self._settled, _check_timeout(timeout))
        with _LOCK:
            return self._after_wait(ok)

    async def wait_for_recovery_async(self, timeout: float | None = None) -> Recovery:
        """``wait_for_recovery`` for asyncio: the same answers and errors, awaited without blocking
        the event loop (no thread is started)."""
        seconds = _check_timeout(timeout)
        await self._wait_async(self._arrived, seconds)
        with _LOCK:
            return self._recovery_or_raise(timeout)

    def _wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with _LOCK:
            if ready() or timeout == 0:
                return ready()
            waiter = _ThreadWaiter()
            self._add_waiter(waiter)
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    with _LOCK:
                        return ready()
                waiter.event.wait(remaining)
                with _LOCK:
                    if ready():
                        return True
                    waiter.event.clear()  # under the lock, so no wake-up is lost
        finally:
            with _LOCK:
                self._remove_waiter(waiter)

    async def _wait_async(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with _LOCK:
                if ready():
                    return True
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                future: asyncio.Future[None] = loop.create_future()
                waiter = _AsyncWaiter(loop, future)
                self._add_waiter(waiter)
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                pass
            finally:
                with _LOCK:
                    self._remove_waiter(waiter)

    def _add_waiter(self, waiter: _ThreadWaiter | _AsyncWaiter) -> None:
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)

    def _remove_waiter(self, waiter: _ThreadWaiter | _AsyncWaiter) -> None:
        if self._waiters is not None:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _notify(self) -> None:
        """Wake every waiter (lock held); each looks again at the state."""
        for waiter in self._waiters or ():
            waiter.wake()

    # --- what the loop asks the monitor -----------------------------------------------------------

    def poll_now(self) -> bool:
        """Ask the monitor to poll this run at once instead of at the next interval (or right after
        a poll in flight); False if the run is not being watched."""
        return bool(self._poll is not None and self._poll(self.run_id))

    def check(self) -> bool:
        """Ask the monitor whether this run is corrupted now: False when it reads healthy (so the
        loop re-raises its own error); True when corrupted (detection is then under way). What the
        monitor's check raises (e.g. the run is not watched) is raised; RecoveryError when this
        handle was not made by a monitor."""
        if self._check is None:
            raise RecoveryError(f"the handle of {self.run_id} has no monitor to check with")
        return bool(self._check(self.run_id))

    def stop(self) -> None:
        """Stop monitoring this run."""
        if self._stop is not None:
            self._stop(self.run_id)

    # --- called by the monitor ------------------------------------------------------------------

    def _began(self) -> None:
        with _LOCK:
            self._recovering = True
            self._notify()

    def _completed(self, recovery: Recovery, *, watching: bool = True) -> None:
        with _LOCK:
            history = self._history
            if history is None:
                self._history = [recovery]
            else:
                history.append(recovery)
                if len(history) > self.HISTORY_LIMIT:
                    del history[: len(history) - self.HISTORY_LIMIT]
            self._count += 1
            self._unseen = recovery
            self._client = recovery.client
            if recovery.new_run_id is not None:
                self._run_id = recovery.new_run_id
            self._recovering = False
            self._watching = self._watching and watching
            self._notify()

    def _failed(self, error: BaseException) -> None:
        """Recovery was given up: ``error`` says why."""
        with _LOCK:
            self._error = error
            self._recovering = False
            self._watching = False
            self._notify()

    def _dropped(self, error: BaseException) -> None:
        """The monitor stopped watching the run on its own (e.g. repeated 404s): ``error`` says why;
        ``wait`` and ``wait_for_recovery`` raise it at once."""
        with _LOCK:
            self._error = error
            self._was_dropped = True
            self._recovering = False
            self._watching = False
            self._notify()

    def _stopped(self) -> None:
        with _LOCK:
            self._watching = False
            self._notify()
