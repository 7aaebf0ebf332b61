"""One attempt's I/O, on a daemon thread of its own, reporting to the worker that waits for it.

The worker (a pool thread) never calls service or user code that may block: it starts the attempt's
body on a daemon thread and waits on its ``Mailbox`` with the attempt's deadline. So a create call
that never returns holds a daemon thread, never a pool worker, and neither interpreter exit nor
``shutdown`` waits for it.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import attrs

from .models import Checkpoint

__all__ = ["Mailbox", "Selected", "Unloadable", "Done", "Failed", "Note"]


@attrs.frozen
class Selected:
    """The body is about to load ``checkpoint``."""

    checkpoint: Checkpoint


@attrs.frozen
class Unloadable:
    """``checkpoint`` cannot be loaded (``error``); the body goes on with the next candidate."""

    checkpoint: Checkpoint
    error: BaseException


@attrs.frozen
class Done:
    """The body made ``client`` from ``checkpoint``; ``adopted`` when it reused an existing run."""

    checkpoint: Checkpoint
    client: Any
    sampler_path: str | None
    adopted: bool = False


@attrs.frozen
class Failed:
    """The body ended with ``error`` while on ``checkpoint`` (None: before any load)."""

    error: BaseException
    checkpoint: Checkpoint | None


Note = Selected | Unloadable | Done | Failed


class Mailbox:
    """Notes posted by an attempt's body for its worker, and a stop flag set from outside.

    ``wake`` is set whenever a note arrives or ``stop`` is called; ``take`` clears it and returns the
    notes in order, atomically, so no note is missed between a ``take`` and the next wait.
    """

    def __init__(self) -> None:
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._notes: deque[Note] = deque()
        self._stopped: str | None = None

    def post(self, note: Note) -> None:
        with self._lock:
            self._notes.append(note)
            self.wake.set()

    def stop(self, why: str) -> None:
        """Ask the worker to give the attempt up (``why``: for the Shutdown error's text)."""
        with self._lock:
            if self._stopped is None:
                self._stopped = why
            self.wake.set()

    @property
    def stopped(self) -> str | None:
        with self._lock:
            return self._stopped

    def take(self) -> list[Note]:
        with self._lock:
            self.wake.clear()
            notes = list(self._notes)
            self._notes.clear()
            if self._stopped is not None:
                self.wake.set()
            return notes
