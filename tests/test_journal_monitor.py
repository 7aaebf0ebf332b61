"""The journal under a running Monitor (issue 12.3, 12.4): a torn file, a failed start, a full disk
and a user's stop during a recovery, over real HTTP against FakeTinker on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import pytest
from test_journal import FailingFile

import tinker_recovery as tr
from tinker_recovery import signals
from tinker_recovery.journal import Journal, read_journal, resume_plan
from tinker_recovery.testing import FakeTinker, LoopbackService


@pytest.fixture
def fake():
    with FakeTinker(seed=4) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


@pytest.fixture
def service(fake):
    svc = LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0)
    yield svc
    svc.close()


def policy(**overrides: Any) -> tr.Policy:
    return tr.Policy(
        **{"enabled": True, "jitter": "none", "poll_interval_ms": 100, "backoff_ms": 10, **overrides}
    )


@contextlib.contextmanager
def watcher(config, service, journal, **overrides):
    with (
        tr.Executor(2, config=config) as executor,
        tr.Monitor(executor, policy(**overrides), config, journal=journal, service=service) as monitor,
    ):
        yield monitor


def test_a_journal_ending_in_a_torn_line_does_not_stop_the_next_start(fake, config, service, tmp_path):
    # 12.3: a crash mid-write left a torn line; the next start resumes and new entries start a line.
    path = tmp_path / "journal.jsonl"
    run_id = fake.add_run(checkpoints=1)
    with watcher(config, service, str(path)) as monitor:
        monitor.monitor_run(run_id, service)
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"event": "detected", "run_id": "' + run_id + '", "att')  # no newline: torn
    other = fake.add_run(checkpoints=1)
    with watcher(config, service, str(path)) as again:
        assert again.watched == [run_id]
        again.monitor_run(other, service)
    lines = path.read_text(encoding="utf-8").split("\n")
    torn = [n for n, line in enumerate(lines) if line.endswith('"att')]
    assert len(torn) == 1 and json.loads(lines[torn[0] + 1])["event"] == "watched"
    assert [item.run_id for item in resume_plan(read_journal(path))] == [run_id, other]


def test_a_failed_start_can_be_retried_and_stop_never_raises(config, service, tmp_path):
    # 12.3: after a start() that failed (the journal could not be opened), a second start() attaches
    # the journal, and stop() raises neither RuntimeError nor OSError.
    folder = tmp_path / "later"
    path = folder / "journal.jsonl"
    with tr.Executor(1, config=config) as executor:
        monitor = tr.Monitor(executor, policy(), config, journal=str(path), service=service)
        with pytest.raises(OSError):
            monitor.start()
        folder.mkdir()
        monitor.start()
        monitor.monitor_run("run-x", service)
        monitor.stop(timeout=5)
        never_started = tr.Monitor(executor, policy(), config, journal=str(tmp_path / "no" / "j.jsonl"))
        with pytest.raises(OSError):
            never_started.start()
        never_started.stop(timeout=5)  # nothing to stop: no error
    assert [entry["event"] for entry in read_journal(path)][:1] == ["watched"]


def test_a_full_disk_is_reported_once_over_five_recoveries_and_stop_closes_everything(
    fake, config, service, tmp_path, caplog
):
    # 12.3: with the disk full, the journal's write error is logged once (not at every signal, with a
    # traceback), recovery goes on, stop() does not raise and the monitor's RestClient is closed.
    journal = Journal(tmp_path / "journal.jsonl", compact_entries=0, compact_bytes=0)
    runs = [fake.add_run(checkpoints=1) for _ in range(5)]
    completed = threading.Semaphore(0)

    def on_completed(sender: Any, **payload: Any) -> None:
        completed.release()

    signals.completed.connect(on_completed)
    try:
        with tr.Executor(2, config=config) as executor:
            monitor = tr.Monitor(executor, policy(), config, journal=journal, service=service).start()
            closed: list[bool] = []
            rest = monitor._poller.rest
            assert rest is not None
            real_close = rest.close
            rest.close = lambda: (closed.append(True), real_close())[1]  # type: ignore[method-assign]
            journal._file = FailingFile(journal._file)  # type: ignore[assignment]
            with caplog.at_level(logging.WARNING, logger="tinker_recovery"):
                handles = [monitor.monitor_run(run_id, service) for run_id in runs]
                for run_id in runs:
                    fake.corrupt(run_id)
                for _ in runs:
                    assert completed.acquire(timeout=30)
                assert all(handle.wait_for_recovery(10) for handle in handles)
                monitor.stop(timeout=5)  # never raises for the journal
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        writes = [r for r in errors if "cannot write" in r.getMessage()]
        assert len(writes) == 1 and "No space left" in writes[0].getMessage() and not writes[0].exc_info
        assert [r.getMessage() for r in errors if r not in writes] == [  # the failing file's close, once
            f"journal {journal.path}: closing failed: [Errno 28] No space left on device"
        ]
        assert isinstance(journal.write_error, OSError) and journal.lost_entries >= 5 * 5
        assert closed == [True] and journal.closed
    finally:
        signals.completed.disconnect(on_completed)


def test_a_user_stop_during_a_recovery_is_kept_across_a_restart(fake, config, service, tmp_path):
    # 12.4: handle.stop() while the run is being recovered; the recovery completes; the restarted
    # watcher does not watch the restored run.
    path = tmp_path / "journal.jsonl"
    run_id = fake.add_run(checkpoints=1)
    fake.add_fault("POST", "load_weights", latency_s=1.0, times=1)  # the create call takes a second
    started, done = threading.Event(), threading.Event()
    on_started = lambda sender, **payload: started.set()  # noqa: E731
    on_completed = lambda sender, **payload: done.set()  # noqa: E731
    signals.started.connect(on_started)
    signals.completed.connect(on_completed)
    try:
        with watcher(config, service, str(path)) as monitor:
            handle = monitor.monitor_run(run_id, service)
            fake.corrupt(run_id)
            assert started.wait(20)
            handle.stop()  # the user stops watching while the restore runs
            assert done.wait(20)  # the recovery completes all the same
            assert monitor.executor is not None and monitor.executor.join(20)
        assert resume_plan(read_journal(path)) == []
        with watcher(config, service, str(path)) as again:
            assert again.watched == []
    finally:
        signals.started.disconnect(on_started)
        signals.completed.disconnect(on_completed)
