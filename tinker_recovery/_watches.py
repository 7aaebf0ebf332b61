"""The registry of a Monitor's watched runs: who is watched, who is being recovered, by which id.

One owner: the ``Watches`` object and its lock. Every move of a run (watched, handed over,
followed after a recovery, dropped, stopped by the user) is one method, one step under the lock,
so a lineage is never unfindable between its two runs and no field is written from two threads
without it. Nothing of a run stays once it leaves (no map of old ids, no history).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import attrs

from . import events
from .errors import Shutdown
from .handle import RunHandle

__all__ = ["Watch", "Watches", "payload"]


@attrs.define(eq=False, weakref_slot=False)
class Watch:
    """A watched run as the registry knows it (its fields written only under the registry's lock).

    ``metadata`` is given as None when the run has none, so such a run keeps no dict of its own
    (issue 16); reading ``metadata`` then gives a new empty dict each time.
    """

    run_id: str
    service: Any
    _metadata: dict[str, Any] | None
    handle: RunHandle
    lineage_id: str
    pending_recovery_id: str | None = None  # a recovery begun before a crash, to adopt
    lineage_given: bool = False  # monitor_run(lineage_id=...): pass it on (else the executor knows it)
    stopped: bool = False

    @property
    def metadata(self) -> dict[str, Any]:
        """What ``monitor_run`` was given (with ``training_client``): what signals and the
        executor get."""
        return {} if self._metadata is None else self._metadata


class Watches:
    """The runs one Monitor watches (by current run id) and the ones being recovered.

    Thread-safe: every method takes the one lock for a few dictionary operations, never a wait.
    After ``close()`` nothing new is watched or followed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[str, Watch] = {}
        self._recovering: dict[str, Watch] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._watched)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> bool:
        """Refuse new runs from now on; True the first time."""
        with self._lock:
            first, self._closed = not self._closed, True
        return first

    def ids(self) -> list[str]:
        """The run ids watched now (runs being recovered not included)."""
        with self._lock:
            return list(self._watched)

    def is_watched(self, run_id: str) -> bool:
        return run_id in self._watched

    def watched(self, run_id: str) -> Watch | None:
        """The watch of ``run_id`` if it is watched (not being recovered)."""
        return self._watched.get(run_id)

    def find(self, run_id: str) -> Watch | None:
        """The watch of a watched run or one being recovered, by its current or original id."""
        with self._lock:
            current = self._current_id(run_id)
            return self._watched.get(current) or self._recovering.get(current)

    def current_id(self, run_id: str) -> str:
        """The id ``run_id``'s lineage is watched under now (``run_id`` itself when unknown)."""
        with self._lock:
            return self._current_id(run_id)

    def recovering(self, run_id: str) -> bool:
        with self._lock:
            return self._current_id(run_id) in self._recovering

    def add(self, watch: Watch) -> Watch:
        """Watch ``watch.run_id``; return the existing watch instead when the run is watched or
        being recovered already. Raises Shutdown after ``close()``."""
        with self._lock:
            if self._closed:
                raise Shutdown(f"monitoring {watch.run_id} refused: the monitor is stopped")
            existing = self._watched.get(watch.run_id) or self._recovering.get(watch.run_id)
            if existing is not None:
                return existing
            self._watched[watch.run_id] = watch
            return watch

    def stop(self, run_id: str) -> Watch | None:
        """The user stops watching ``run_id`` (current or original id): the watch, marked stopped,
        or None when it was not watched (or stopped before). A recovery in flight is not followed."""
        with self._lock:
            current = self._current_id(run_id)
            watch = self._watched.pop(current, None) or self._recovering.get(current)
            if watch is None or watch.stopped:
                return None
            watch.stopped = True
            return watch

    def begin_recovery(self, run_id: str) -> Watch | None:
        """Move a watched run to the runs being recovered; None when it is no longer watched."""
        with self._lock:
            watch = self._watched.pop(run_id, None)
            if watch is not None:
                self._recovering[run_id] = watch
            return watch

    def end_recovery(self, watch: Watch) -> None:
        """The recovery of ``watch`` ended without a run to follow."""
        with self._lock:
            self._recovering.pop(watch.run_id, None)

    def follow(self, watch: Watch, new_run_id: str | None, client: Any, lineage_id: str) -> Watch | None:
        """The recovery of ``watch`` completed: in one step, watch ``new_run_id`` with the same
        service and handle, unless the user stopped the run, the registry is closed or there is
        no new run id. Returns the successor's watch, or None when nothing is followed."""
        with self._lock:
            self._recovering.pop(watch.run_id, None)
            if new_run_id is None or watch.stopped or self._closed:
                return None
            successor = Watch(
                new_run_id,
                watch.service,
                {**watch.metadata, "training_client": client},
                watch.handle,
                lineage_id,
            )
            return self._watched.setdefault(new_run_id, successor)

    def drop(self, run_id: str) -> Watch | None:
        """The monitor gives ``run_id`` up on its own (e.g. repeated 404s): its watch, or None."""
        with self._lock:
            return self._watched.pop(run_id, None)

    def _current_id(self, run_id: str) -> str:
        """(lock held) A miss scans the runs (O(watched)): no map of old ids is kept, so nothing of
        a recovered run stays behind."""
        if run_id in self._watched or run_id in self._recovering:
            return run_id
        for watch in (*self._watched.values(), *self._recovering.values()):
            if watch.handle.original_run_id == run_id:
                return watch.run_id
        return run_id


def payload(watch: Watch, strategy: str, time: datetime, **extra: Any) -> dict[str, Any]:
    """The signal payload of a monitor event about ``watch`` (see ``events.payload``)."""
    return events.payload(
        run_id=watch.run_id,
        attempt=0,
        strategy=strategy,
        metadata=watch.metadata,
        time=time,
        lineage_id=watch.lineage_id,
        recovery_id=None,
        **extra,
    )
