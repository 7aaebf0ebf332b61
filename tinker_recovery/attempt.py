"""One attempt's I/O, on a daemon thread of its own, reporting to the worker that waits for it.

The worker (a pool thread) never calls service or user code that may block: it starts the attempt's
``Body`` on a daemon thread and waits on its ``Mailbox`` with the attempt's deadline. So a create call
that never returns holds a daemon thread, never a pool worker, and neither interpreter exit nor
``shutdown`` waits for it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from ._text import escape_text
from .candidates import SOURCE_KEY, Candidates, SourceOf
from .classify import is_unloadable
from .clock import Clock, bounded_wait_s, remaining
from .errors import AttemptTimeout, RecoveryError
from .models import Checkpoint, TrainingRun
from .policy import Policy
from .restore import adopt_client, create_client, find_created_run, restored_metadata

__all__ = ["Body", "Mailbox", "Selected", "Unloadable", "Done", "Failed", "Note"]

log = logging.getLogger("tinker_recovery.attempt")


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


@attrs.define
class Body:
    """One attempt's I/O, run once on the attempt's own thread; it owns its copy of the run.

    ``execute(box, deadline)`` waits for the ``previous`` attempt's body (a retry never overlaps a create
    call still under way) and takes its late client; else, with ``look_first`` (a retry, or a resumed
    recovery), adopts a run this recovery already created; else tries the candidates in turn. It
    posts its notes to ``box`` and ends with one ``Done`` or ``Failed``; it starts no create call once
    the box is stopped. ``deadline``: monotonic seconds on ``clock``, or None.
    """

    run_id: str
    service: Any
    policy: Policy
    rest: Any
    given: Checkpoint | None
    run: TrainingRun | None
    attempt: int
    look_first: bool
    lineage_id: str
    recovery_id: str
    clock: Clock
    source_of: SourceOf
    previous: tuple[threading.Thread, Mailbox] | None

    def _remaining(self, deadline: float | None) -> float | None:
        return remaining(deadline, self.clock.monotonic())

    def execute(self, box: Mailbox, deadline: float | None) -> None:
        current: Checkpoint | None = None
        try:
            if self.previous is not None:
                late = self._after_previous(self.previous, deadline)
                if late is not None:
                    box.post(Selected(late.checkpoint))
                    box.post(late)
                    return
            if self.rest is not None and self.look_first:
                created = find_created_run(self.rest, self.recovery_id)
                if created is not None:
                    box.post(self._adopted(created, deadline))
                    return
            candidates = self._candidates()
            last: Failed | None = None
            for candidate in candidates:
                current = candidate
                box.post(Selected(candidate))
                metadata = restored_metadata(
                    candidates.run,
                    lineage_id=self.lineage_id,
                    recovery_id=self.recovery_id,
                    checkpoint=candidate,
                )
                if box.stopped is not None:
                    return  # the worker gave this attempt up: start nothing more
                try:
                    client = create_client(
                        self.service,
                        self.policy,
                        candidate,
                        candidates.run,
                        metadata,
                        self._remaining(deadline),
                    )
                except Exception as error:
                    if not is_unloadable(error) or box.stopped is not None:
                        raise
                    box.post(Unloadable(candidate, error))
                    last = Failed(error, candidate)
                    continue
                box.post(Done(candidate, client, candidates.sampler_path(candidate)))
                return
            assert last is not None  # Candidates raises MissingCheckpoint when it yields nothing
            box.post(last)
        except BaseException as error:  # handed to the worker, which reports it
            box.post(Failed(error, current))

    def _after_previous(
        self, previous: tuple[threading.Thread, Mailbox], deadline: float | None
    ) -> Done | None:
        """Wait (within this attempt's deadline) for the previous attempt's body; return the client it
        made after it was given up, if any. Raises AttemptTimeout if it is still running."""
        thread, old_box = previous
        thread.join(bounded_wait_s(self._remaining(deadline)))
        if thread.is_alive():
            raise AttemptTimeout(
                f"run {self.run_id}: the previous attempt's create call is still running; "
                "no second one is started while it may still create a run"
            )
        late = next((note for note in old_box.take() if isinstance(note, Done)), None)
        if late is not None:
            log.warning(
                "run %s: the previous attempt's create call finished after its time-out; its client is used",
                self.run_id,
            )
        return late

    def _adopted(self, created: TrainingRun, deadline: float | None) -> Done:
        source_path = (created.user_metadata or {}).get(SOURCE_KEY)
        if not source_path:
            raise RecoveryError(
                f"run {escape_text(created.training_run_id, 300)} names no source checkpoint; cannot adopt it"
            )
        log.warning(
            "recovery %s of run %s: run %s was already created by it; adopted instead of creating another",
            self.recovery_id,
            self.run_id,
            escape_text(created.training_run_id, 300),
        )
        client = adopt_client(self.service, created.training_run_id, self._remaining(deadline))
        return Done(Checkpoint.from_path(source_path, time=self.clock.now()), client, None, adopted=True)

    def _candidates(self) -> Candidates:
        rest = self.rest
        refetch = self.attempt > 1 and rest is not None and self.policy.strategy_name == "latest"
        fetch_run: Callable[[str], TrainingRun] | None = None
        list_checkpoints: Callable[[str], list[Checkpoint]] | None = None
        if rest is not None:
            fetch_run, list_checkpoints = rest.get_training_run, rest.list_checkpoints
        run = self.run
        if refetch:
            run = rest.get_training_run(self.run_id)
        return Candidates(
            self.policy,
            run_id=self.run_id,
            given=None if refetch else self.given,
            run=run,
            fetch_run=fetch_run,
            list_checkpoints=list_checkpoints,
            source_of=self.source_of,
            now=self.clock.now(),
        )
