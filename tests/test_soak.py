"""Fault soak: Monitor + Executor against a FakeTinker that fails four requests in ten.

200 runs are watched; 50 of them, chosen with a seeded random source, are corrupted at seeded
random moments within the first 8 s. The polls (``GET /training_runs/{id}``) and the restores'
``POST /load_weights`` both meet, independently per request: 20% 5xx (500 and 503), 5% dropped
connections, 5% slow answers beyond the client's time-out, 5% malformed JSON and 5% 429 with
Retry-After. A fault on load_weights replaces its processing, so a faulted load is never carried
out (a slow one answers 503 after its delay).

The monitor is forced to ``poll_mode="per_run"``: one poll is then exactly one GET of that run, so
every failed poll GET in the server's log must match one ``poll_error`` for that run. (In list mode
one failed page sends a ``poll_error`` for every run it was to read, so the counts differ.)

The executor reads runs and checkpoints straight from the fake's Python API (``_DirectRest``), not
over HTTP, so every ``GET /training_runs/{id}`` the server logs is a poll.

What counts as an injected fault: a request the server answered through a FaultRule, i.e. a log
entry whose ``fault`` is not None. Every such poll is a failed poll; every other poll must
succeed. The library handles injected faults at WARNING (a poll error, a retried attempt); the
only ERROR records allowed are those carrying FakeTinker's "injected fault (rule N)" text.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import traceback
from collections import Counter
from typing import Any

import pytest
from conftest import DebugLog

import tinker_recovery as tr
from tinker_recovery.testing import FakeTinker, LoopbackService

KEY = "tml-soak-5ecre7-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
SEED = 20260101
RUNS = 200
CORRUPTED = 50
CORRUPT_WITHIN_S = 8.0
POLL_TIMEOUT_S = 1.0  # the monitor's per-poll time-out
POLL_SLOW_S = 1.6  # a slow poll answers after this: beyond POLL_TIMEOUT_S
SERVICE_TIMEOUT_S = 2.0  # LoopbackService's time-out
LOAD_SLOW_S = 2.6  # a slow load_weights answers 503 after this: beyond SERVICE_TIMEOUT_S
POLL_PATH = re.compile(r"^/api/v1/training_runs/[^/]+$")
LOAD_PATH = r"^/api/v1/load_weights$"


def _faults(slow: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    """(rule, share of all requests): 20% 5xx, 5% drop, 5% slow, 5% malformed, 5% 429."""
    return [
        ({"status": 500}, 0.10),
        ({"status": 503}, 0.10),
        ({"drop": True}, 0.05),
        (slow, 0.05),
        ({"malformed": True}, 0.05),
        ({"status": 429, "retry_after_s": 0.1}, 0.05),
    ]


def add_faults(fake: FakeTinker, method: str, path: str, slow: dict[str, Any], *,
               each_once: bool = False) -> None:
    """Add the rules in order; the first rule that fires wins, so each one's probability is
    its share of the requests that the rules before it let through. ``each_once``: the first
    requests meet each fault once, in order (for a path with too few requests to rely on chance)."""
    if each_once:
        for rule, _share in _faults(slow):
            fake.add_fault(method, path, times=1, **rule)
    passed = 1.0
    for rule, share in _faults(slow):
        fake.add_fault(method, path, probability=share / passed, **rule)
        passed -= share


class _DirectRest:
    """The executor's REST access, read from the fake in-process: no HTTP, so no poll-path GETs."""

    def __init__(self, fake: FakeTinker) -> None:
        self._fake = fake

    def get_training_run(self, run_id: str, **_: Any) -> tr.TrainingRun:
        return tr.TrainingRun.from_json(self._fake.get_run(run_id))

    def list_checkpoints(self, run_id: str) -> list[tr.Checkpoint]:
        return [tr.Checkpoint.from_json(c) for c in self._fake.list_checkpoints(run_id)]


class _LogWatch:
    """Wakes a waiting test whenever the fake logs a request (its log has no condition to wait on)."""

    def __init__(self, fake: FakeTinker) -> None:
        self._fake = fake
        self._cond = threading.Condition()
        request_log = fake._request_log
        append = request_log.append

        def append_and_notify(entry: Any) -> None:
            append(entry)
            with self._cond:
                self._cond.notify_all()

        request_log.append = append_and_notify

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._fake.requests), timeout)


@pytest.fixture
def thread_deaths(monkeypatch):
    """Exceptions that ended a thread, caught through threading.excepthook."""
    deaths: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", deaths.append)
    return deaths


def shown(error: BaseException) -> str:
    """All a user can see of an exception: str, repr and the full traceback with its causes."""
    return str(error) + repr(error) + "".join(traceback.format_exception(error))


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_fault_soak(recorder, debug_log, thread_deaths):
    rng = random.Random(SEED)
    with FakeTinker(api_key=KEY, seed=SEED) as fake:
        log_watch = _LogWatch(fake)
        run_ids = [fake.add_run(checkpoints=2) for _ in range(RUNS)]
        corrupted = rng.sample(run_ids, CORRUPTED)
        moments = sorted((rng.uniform(0, CORRUPT_WITHIN_S), run_id) for run_id in corrupted)
        add_faults(fake, "GET", POLL_PATH.pattern, {"latency_s": POLL_SLOW_S})
        add_faults(fake, "POST", LOAD_PATH, {"latency_s": LOAD_SLOW_S, "status": 503}, each_once=True)

        config = tr.Config(api_key=KEY, base_url=fake.base_url)
        policy = tr.Policy(enabled=True, poll_interval_ms=1000, max_attempts=30, backoff_ms=20,
                           max_backoff_ms=200)
        service = LoopbackService(fake.base_url, KEY, timeout_s=SERVICE_TIMEOUT_S)
        executor = tr.Executor(8, rest=_DirectRest(fake)).start()
        monitor = tr.Monitor(executor, policy, config, poll_mode="per_run",
                             poll_timeout_s=POLL_TIMEOUT_S).start()
        done = threading.Event()

        def corrupt_at_their_moments() -> None:
            clock = threading.Event()
            started = time.monotonic()
            for moment, run_id in moments:
                if clock.wait(max(0.0, started + moment - time.monotonic())) or done.is_set():
                    return
                fake.corrupt(run_id)

        corrupter = threading.Thread(target=corrupt_at_their_moments, name="soak.corrupter")
        try:
            handles = {run_id: monitor.monitor_run(run_id, service) for run_id in run_ids}
            corrupter.start()
            recorder.wait_for("completed", CORRUPTED, timeout=60)
            corrupter.join(10)
            assert executor.join(10), f"recoveries still pending: {executor.pending}"
            assert all(handles[run_id].wait(10) for run_id in corrupted)
            alive = {t.name for t in threading.enumerate()}
            assert {"tinker_recovery.monitor", "tinker_recovery.executor.dispatch",
                    "tinker_recovery.executor.scheduler"} <= alive, "a component thread died"
        finally:
            done.set()
            corrupter.join(10)
            monitor.stop(timeout=10)
            executor.shutdown(timeout=10)
            service.close()
        # slow polls the client gave up on are logged by the fake only when it answers
        timed_out = sum(isinstance(p["error"], tr.RequestTimeout) for p in recorder.payloads("poll_error"))

        def all_slow_polls_logged(log: list) -> bool:
            return sum(_is_poll(r) and r.fault == "latency" for r in log) >= timed_out

        assert log_watch.wait_for(all_slow_polls_logged, timeout=POLL_SLOW_S + 5), \
            "more polls timed out than were slowed down: a healthy poll missed its time-out"
        served = fake.requests
        loads = {run_id: fake.load_weights_count(run_id) for run_id in run_ids}

    # every corrupted run recovered exactly once, and no other run
    completed = Counter(p["run_id"] for p in recorder.payloads("completed"))
    assert completed == Counter(corrupted)
    assert loads == {run_id: int(run_id in corrupted) for run_id in run_ids}
    assert Counter(p["run_id"] for p in recorder.payloads("detected")) == Counter(corrupted)
    assert recorder.count("exhausted") == 0
    assert all(len(handles[run_id].recoveries) == 1 and handles[run_id].error is None for run_id in corrupted)

    # every attempt ended once: completed or failed
    assert recorder.count("started") == recorder.count("completed") + recorder.count("failed")

    # every failed poll (a faulted GET of a run) sent one poll_error for that run, and no other did
    failed_polls = Counter(r.run_id for r in served if _is_poll(r) and r.fault is not None)
    poll_errors = Counter(p["run_id"] for p in recorder.payloads("poll_error"))
    assert poll_errors == failed_polls
    assert all(p["reason"].startswith("poll failed: ") for p in recorder.payloads("poll_error"))

    # the faults were really injected, on both paths, and really were retried through
    poll_faults = Counter(r.fault for r in served if _is_poll(r))
    load_faults = Counter(r.fault for r in served if r.path == "/api/v1/load_weights")
    for faults in (poll_faults, load_faults):
        assert {"status:500", "status:503", "drop", "malformed", "status:429"} <= set(faults), faults
    assert poll_faults["latency"] > 0 and load_faults["status:503"] > 0
    assert sum(n for fault, n in poll_faults.items() if fault is not None) > 0.25 * sum(poll_faults.values())
    assert recorder.count("failed") > 0

    # no thread died, and none is left
    assert thread_deaths == []
    left = [t.name for t in threading.enumerate() if t.name.startswith("tinker_recovery")]
    assert left == []

    # nothing at ERROR, except records carrying an injected fault
    errors = [text for record, text in debug_log.records
              if record.levelno >= logging.ERROR and "injected fault" not in text]
    assert errors == []
    assert any(record.levelno == logging.WARNING for record, _ in debug_log.records)

    # the key appears in no log line, exception, repr or signal payload
    assert_key_hidden(debug_log, recorder, [monitor, executor, service, config, *handles.values()])


def assert_key_hidden(debug_log: DebugLog, recorder: Any, objects: list[Any]) -> None:
    texts = debug_log.texts
    for _event, _sender, payload in recorder.events:
        texts.append(repr(payload))
        for value in payload.values():
            if isinstance(value, BaseException):
                texts.append(shown(value))
    texts += [repr(obj) + str(obj) for obj in objects]
    for handle in objects:
        for recovery in getattr(handle, "recoveries", []):
            texts.append(repr(recovery))
    assert texts and len(debug_log.records) > 100
    leaks = [text[:300] for text in texts if KEY in text or KEY[4:] in text]
    assert leaks == []


def _is_poll(entry: Any) -> bool:
    return entry.method == "GET" and POLL_PATH.match(entry.path) is not None


