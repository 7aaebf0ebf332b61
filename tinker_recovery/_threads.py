"""The Monitor's helper threads: a pool of poll workers and a signal notifier.

Both are named daemon threads fed by a ``queue.SimpleQueue`` and stopped with a ``None`` sentinel
(the CPython ``concurrent.futures.thread`` shape). Daemon, unlike a ``ThreadPoolExecutor``'s
workers, which interpreter exit joins: a poll hanging on a slow server never delays exit. Nothing
a job or a receiver raises, ``BaseException`` included, ends one of these threads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal

from . import clock
from .signals import send_guarded

__all__ = ["NOTIFY_BACKLOG", "Notifier", "Workers", "remaining"]

log = logging.getLogger("tinker_recovery.monitor")

NOTIFY_BACKLOG = 10_000
"""Signals queued behind a blocked receiver before further ones are dropped (and logged once)."""


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic()`` value), at least 0; None for None."""
    return clock.remaining(deadline, time.monotonic())


class Workers:
    """Named daemon threads running jobs from one queue; ``grow`` adds threads, never removes."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def grow(self, size: int) -> None:
        """Have at least ``size`` threads."""
        while len(self._threads) < size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` on a worker; never blocks."""
        self._jobs.put((job, args))

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, args = item
            try:
                job(*args)
            except BaseException:  # a worker never dies of what it runs
                log.error("%s: a job raised; going on", self._name, exc_info=True)

    def shutdown(self, deadline: float | None) -> None:
        """Stop every thread after its job; wait for them until ``deadline`` (None: for ever)."""
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(remaining(deadline))


class Notifier:
    """One daemon thread sending queued signals in order, so a receiver that blocks delays only
    the signals behind it, never the thread that queued them."""

    def __init__(self, name: str, sender: Any) -> None:
        self._sender = sender
        self._queue: queue.SimpleQueue[tuple[NamedSignal, dict[str, Any]] | None] = queue.SimpleQueue()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, signal: NamedSignal, payload: dict[str, Any]) -> None:
        """Queue ``signal`` with ``payload``; dropped (logged once) past ``NOTIFY_BACKLOG``."""
        if self._queue.qsize() >= NOTIFY_BACKLOG:
            self._dropped += 1
            if self._dropped == 1:
                log.error(
                    "a %s receiver blocks: %d signals queued; dropping further ones",
                    signal.name,
                    NOTIFY_BACKLOG,
                )
            return
        self._queue.put((signal, payload))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            send_guarded(item[0], self._sender, **item[1])

    def shutdown(self, deadline: float | None) -> None:
        """Send what is queued, then stop; wait until ``deadline`` (None: for ever)."""
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(remaining(deadline))
