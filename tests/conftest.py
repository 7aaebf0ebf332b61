"""Shared test helpers: signal recording, a recording scheduler, fake services, thread-leak checks."""

from __future__ import annotations

import logging
import os
import signal as os_signal
import threading
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from tinker_recovery import signals
from tinker_recovery.models import Checkpoint, TrainingRun

# CI runs every property test on the same examples (derandomized, no example database), so a run
# there never depends on luck; a developer's machine explores new examples on every run.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# A test run started in the background by a script (``cmd &`` without job control) inherits SIGINT
# ignored, and so would every child process it starts: Python then installs no KeyboardInterrupt
# handler in them and the Ctrl-C tests hang. Take SIGINT back so children start with the default.
if os_signal.getsignal(os_signal.SIGINT) is os_signal.SIG_IGN:
    os_signal.signal(os_signal.SIGINT, os_signal.default_int_handler)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class SignalRecorder:
    """Records every recovery signal; ``wait_for`` blocks until enough of one event arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self.close = signals.connect_all(self._record)

    def _record(self, event: str, sender: Any, **payload: Any) -> None:
        with self._cond:
            self.events.append((event, sender, payload))
            self._cond.notify_all()

    def names(self, run_id: str | None = None) -> list[str]:
        with self._cond:
            return [e for e, _, p in self.events if run_id is None or p["run_id"] == run_id]

    def payloads(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [p for e, _, p in self.events if e == event]

    def count(self, event: str) -> int:
        return len(self.payloads(event))

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(1 for e, _, _ in self.events if e == event) >= count, timeout
            )
        if not ok:
            raise AssertionError(f"waited {timeout} s for {count} {event!r}; got {self.names()}")
        return self.payloads(event)



@pytest.fixture
def recorder() -> Iterator[SignalRecorder]:
    rec = SignalRecorder()
    yield rec
    rec.close()


class RecordingScheduler:
    """A Scheduler that only records; ``fire()`` runs the pending callbacks in the test's thread."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.pending: dict[Hashable, Callable[[], None]] = {}
        self._cond = threading.Condition()
        self.stopped = False

    def start(self) -> None:
        pass

    def schedule(self, delay_s: float, key: Hashable, callback: Callable[[], None]) -> None:
        with self._cond:
            if self.stopped:
                raise RuntimeError("stopped")
            self.delays.append(delay_s)
            self.pending[key] = callback
            self._cond.notify_all()

    def wait_scheduled(self, count: int, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.delays) >= count, timeout):
                raise AssertionError(f"expected {count} scheduled retries, got {self.delays}")

    def fire(self) -> None:
        with self._cond:
            callbacks, self.pending = list(self.pending.values()), {}
        for callback in callbacks:
            callback()

    def shutdown(self, timeout: float | None = None) -> list[Hashable]:
        with self._cond:
            self.stopped = True
            keys, self.pending = list(self.pending), {}
        return keys


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


class FakeClient:
    """A restored training client: only what recovery reads of one."""

    def __init__(self, model_id: str | None) -> None:
        self.model_id = model_id

    def __repr__(self) -> str:
        return f"FakeClient({self.model_id!r})"


class FakeService:
    """Stands in for ``tinker.ServiceClient`` in executor unit tests.

    ``outcomes`` is consumed one per create call: an exception is raised, anything else returned;
    when empty, a new FakeClient is returned. ``gate``, when set, makes every call block on it.
    """

    def __init__(self, outcomes: list[Any] | None = None, gate: threading.Event | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.calls: list[tuple[str, str]] = []
        self.gate = gate
        self.active = 0
        self.max_active = 0
        self._lock = threading.Condition()
        self._made = 0

    def _create(self, kind: str, path: str) -> Any:
        with self._lock:
            self.calls.append((kind, path))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._lock.notify_all()
        try:
            if self.gate is not None and not self.gate.wait(20):
                raise AssertionError("gate never opened")
            with self._lock:
                outcome = self.outcomes.pop(0) if self.outcomes else None
                self._made += 1
                made = self._made
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome if outcome is not None else FakeClient(f"restored:{made}")
        finally:
            with self._lock:
                self.active -= 1

    def wait_active(self, count: int, timeout: float = 10.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self.active >= count, timeout):
                raise AssertionError(f"expected {count} concurrent calls, saw {self.active}")

    def create_training_client_from_state_with_optimizer(self, path: str) -> Any:
        return self._create("with_optimizer", path)

    def create_training_client_from_state(self, path: str) -> Any:
        return self._create("weights_only", path)


def checkpoint(
    run_id: str,
    name: str,
    *,
    minutes: int = 0,
    kind: str = "training",
    expires_in_min: int | None = None,
    metadata: dict[str, str] | None = None,
) -> Checkpoint:
    segment = {"training": "weights", "sampler": "sampler_weights"}[kind]
    return Checkpoint(
        checkpoint_id=f"{segment}/{name}",
        checkpoint_type=kind,  # type: ignore[arg-type]
        time=T0 + timedelta(minutes=minutes),
        tinker_path=f"tinker://{run_id}/{segment}/{name}",
        user_metadata=metadata,
        expires_at=None if expires_in_min is None else T0 + timedelta(minutes=expires_in_min),
    )


def training_run(run_id: str, last: Checkpoint | None = None, *, corrupted: bool = True) -> TrainingRun:
    return TrainingRun(
        training_run_id=run_id,
        base_model="base",
        model_owner="owner",
        is_lora=True,
        last_request_time=T0,
        corrupted=corrupted,
        last_checkpoint=last,
    )


class StubRest:
    """A RestClient stand-in for executor unit tests: runs and checkpoints from dicts, calls counted."""

    def __init__(
        self,
        runs: dict[str, TrainingRun] | None = None,
        checkpoints: dict[str, list[Checkpoint]] | None = None,
    ) -> None:
        self.runs = runs or {}
        self.checkpoints = checkpoints or {}
        self.calls: list[tuple[str, str]] = []

    def get_training_run(self, run_id: str, **_: Any) -> TrainingRun:
        self.calls.append(("get_training_run", run_id))
        return self.runs[run_id]

    def list_checkpoints(self, run_id: str) -> list[Checkpoint]:
        self.calls.append(("list_checkpoints", run_id))
        return list(self.checkpoints.get(run_id, []))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a tinker_recovery thread running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.name.startswith("tinker_recovery")]
    for thread in leaked:
        thread.join(5)
    alive = [t.name for t in leaked if t.is_alive()]
    assert not alive, f"threads left running: {alive}"


class DebugLog(logging.Handler):
    """Every record of every logger at DEBUG, formatted with its traceback, as a user would see it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.records: list[tuple[logging.LogRecord, str]] = []
        self._records_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        with self._records_lock:
            self.records.append((record, text))

    @property
    def texts(self) -> list[str]:
        with self._records_lock:
            return [text for _, text in self.records]


@pytest.fixture
def debug_log() -> Iterator[DebugLog]:
    """Log everything at DEBUG (the package and the HTTP stack) into a DebugLog."""
    handler = DebugLog()
    root, package = logging.getLogger(), logging.getLogger("tinker_recovery")
    saved = root.level, package.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    package.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(saved[0])
    package.setLevel(saved[1])
