"""Monitor + Executor against FakeTinker over real loopback HTTP."""

from __future__ import annotations

import pytest

import tinker_recovery as tr
from tinker_recovery.testing import FakeTinker, LoopbackService


@pytest.fixture
def fake():
    with FakeTinker(seed=1) as server:
        yield server


@pytest.fixture
def config(fake):
    return tr.Config(api_key=fake.api_key, base_url=fake.base_url, timeout_s=5.0, max_retries=0)


@pytest.fixture
def service(fake):
    svc = LoopbackService(fake.base_url, fake.api_key, timeout_s=5.0)
    yield svc
    svc.close()


def policy(**overrides):
    return tr.Policy(
        **{
            "enabled": True,
            "jitter": "none",
            "poll_interval_ms": 100,
            "backoff_ms": 10,
            "max_backoff_ms": 100,
            **overrides,
        }
    )


def run_path(run_id):
    return rf"^/api/v1/training_runs/{run_id}$"


def test_corrupted_run_is_restored_from_its_latest_checkpoint(fake, config, service, recorder):
    run_id = fake.add_run(checkpoints=2)
    with tr.Executor(1, config=config) as executor, tr.Monitor(executor, policy(), config) as monitor:
        handle = monitor.monitor_run(run_id, service, {"training_client": "old"})
        fake.corrupt(run_id)
        recorder.wait_for("completed")
        assert handle.wait(10)
        recovery = handle.take_recovery()
        assert recovery.checkpoint.tinker_path == f"tinker://{run_id}/weights/step-000020"
        assert recovery.step == 20 and handle.client.model_id == recovery.new_run_id
        assert handle.run_id == recovery.new_run_id and monitor.watched == [recovery.new_run_id]
        assert fake.get_run(recovery.new_run_id)["corrupted"] is False
    assert fake.load_weights_count(run_id) == 1
    assert recorder.names(run_id) == [
        "detected",
        "started",
        "checkpoint_selected",
        "client_created",
        "completed",
    ]


def test_a_500_sends_poll_error_and_the_run_stays_watched(fake, config, service, recorder):
    run_id = fake.add_run()
    fake.add_fault("GET", run_path(run_id), status=500, times=1)
    with tr.Executor(1, config=config) as executor, tr.Monitor(executor, policy(), config) as monitor:
        monitor.monitor_run(run_id, service)
        error = recorder.wait_for("poll_error")[0]
        assert isinstance(error["error"], tr.ServerError) and error["error"].status_code == 500
        fake.corrupt(run_id)
        recorder.wait_for("completed")
    assert recorder.count("poll_error") == 1


def test_one_hanging_run_does_not_delay_the_others(fake, config, service, recorder):
    hanging = fake.add_run()
    healthy = [fake.add_run() for _ in range(3)]
    # the hanging run answers after 2 s, inside the 4 s poll time-out: a poller that waited for it
    # would see the corruption only after that answer is logged
    fake.add_fault("GET", run_path(hanging), latency_s=2.0)
    with (
        tr.Executor(2, config=config) as executor,
        tr.Monitor(executor, policy(), config, poll_timeout_s=4.0) as monitor,
    ):
        monitor.monitor_run(hanging, service)
        for run_id in healthy:
            monitor.monitor_run(run_id, service)
        fake.corrupt(healthy[1])
        detected = recorder.wait_for("detected", timeout=5)
        assert detected[0]["run_id"] == healthy[1]
        # the hanging run's first poll has not been answered yet: detection did not wait for it
        assert not [r for r in fake.requests if r.path == f"/api/v1/training_runs/{hanging}"]
        monitor.stop(timeout=5)


def test_deleted_newest_checkpoint_falls_back_to_the_previous(fake, config, service, recorder):
    run_id = fake.add_run(checkpoints=3)
    with tr.Executor(1, config=config) as executor:
        snapshot = tr.TrainingRun.from_json(fake.get_run(run_id))  # taken before the delete: stale
        fake.delete_checkpoint(run_id, "weights/step-000030")
        recovery = executor.recover(run_id, service, policy(), run=snapshot).result(10)
    assert recovery.checkpoint.name == "step-000020"
    assert [p["checkpoint"].name for p in recorder.payloads("checkpoint_selected")] == [
        "step-000030",
        "step-000020",
    ]
    assert fake.load_weights_count(run_id) == 1


def test_expired_checkpoints_are_skipped(fake, config, service):
    run_id = fake.add_run(checkpoints=1, ttl_seconds=0.001)
    with tr.Executor(1, config=config) as executor, pytest.raises(tr.MissingCheckpoint):
        executor.recover(run_id, service, policy()).result(10)
    assert fake.load_weights_count(run_id) == 0


def test_run_answering_404_is_dropped_after_max_poll_errors(fake, config, service, recorder):
    with (
        tr.Executor(1, config=config) as executor,
        tr.Monitor(executor, policy(max_poll_errors=3), config) as monitor,
    ):
        handle = monitor.monitor_run("no-such-run", service)
        errors = recorder.wait_for("poll_error", 3)
        assert errors[2]["reason"].startswith("dropped from monitoring")
        assert monitor.watched == [] and not handle.watching
    gets = [r for r in fake.requests if r.path.endswith("/no-such-run")]
    assert len(gets) == 3 and all(r.status == 404 for r in gets)


@pytest.mark.timeout(30)
def test_a_blocked_wait_for_recovery_raises_why_as_soon_as_the_run_is_dropped(fake, config, service):
    # 12.9: a run dropped after max_poll_errors 404s made wait_for_recovery wait out its whole
    # time-out; a loop blocked in it with no time-out at all is woken at the drop, with the reason.
    import time

    with (
        tr.Executor(1, config=config) as executor,
        tr.Monitor(executor, policy(max_poll_errors=3), config) as monitor,
    ):
        handle = monitor.monitor_run("no-such-run", service)
        began = time.monotonic()
        with pytest.raises(tr.NotFound, match="not found for 3 consecutive polls"):
            handle.wait_for_recovery()  # no time-out
        assert time.monotonic() - began < 5.0  # three polls 100 ms apart, not a time-out
        with pytest.raises(tr.NotFound):
            handle.wait(None)


def test_lineage_budget_stops_a_run_that_keeps_failing(fake, config, service, recorder):
    run_id = fake.add_run()
    # every run this lineage restarts into saves a checkpoint, then reads corrupted again

    def corrupt_the_new_run(sender, **payload):
        payload["client"].save_state("step-000100")
        fake.corrupt(payload["client"].model_id)

    tr.signals.completed.connect(corrupt_the_new_run)
    try:
        with (
            tr.Executor(1, config=config) as executor,
            tr.Monitor(executor, policy(max_recoveries=2), config) as monitor,
        ):
            handle = monitor.monitor_run(run_id, service)
            fake.corrupt(run_id)
            exhausted = recorder.wait_for("exhausted")[0]
            assert handle.wait(10)
    finally:
        tr.signals.completed.disconnect(corrupt_the_new_run)
    assert "restart budget spent: 2 of 2" in exhausted["reason"]
    assert isinstance(handle.error, tr.BudgetExhausted) and len(handle.recoveries) == 2
    assert recorder.count("completed") == 2 and recorder.count("detected") == 3


@pytest.mark.skipif(
    not hasattr(tr.journal.Journal, "attach"), reason="resuming lives in Journal.attach (journal branch)"
)
def test_restarted_monitor_picks_its_runs_back_up_from_the_journal(fake, config, service, recorder, tmp_path):
    journal = tmp_path / "watch.jsonl"
    first, second = fake.add_run(), fake.add_run()
    with tr.Executor(1, config=config) as executor:
        with tr.Monitor(executor, policy(), config, journal=str(journal)) as monitor:
            # kept: monitor.handle(first) is None once the handle follows the new run
            handle = monitor.monitor_run(first, service)
            monitor.monitor_run(second, service)
            fake.corrupt(first)
            recorder.wait_for("completed")
            new_run = recorder.payloads("completed")[0]["client"].model_id
            assert handle.wait(10)
        # the watcher restarts: it must watch the recovered run and the untouched one, and recover again
        with tr.Monitor(executor, policy(), config, journal=str(journal), service=service) as again:
            assert sorted(again.watched) == sorted([new_run, second])
            fake.corrupt(second)
            recorder.wait_for("completed", 2)
    events = [e["event"] for e in tr.read_journal(journal)]
    assert events.count("completed") == 2 and fake.api_key not in journal.read_text()


def test_executor_without_rest_uses_the_monitors_config(fake, config, service, recorder):
    run_id = fake.add_run(checkpoints=3)
    scores = {"step-000010": 3.0, "step-000020": 1.0, "step-000030": 2.0}
    best = policy(checkpoint_strategy="best", best_by=lambda cp: scores[cp.name])
    with tr.Executor(1) as executor, tr.Monitor(executor, best, config) as monitor:
        handle = monitor.monitor_run(run_id, service)
        fake.corrupt(run_id)
        recorder.wait_for("completed")
        assert handle.wait(10)
    assert handle.last_recovery.checkpoint.name == "step-000010"


def test_every_thread_is_a_named_daemon_and_none_is_left(fake, config, service, recorder):
    import threading

    before = set(threading.enumerate())
    run_id = fake.add_run()
    seen = {}

    def snapshot(sender, **payload):
        seen.update({t.name: t.daemon for t in threading.enumerate() if t not in before})

    tr.signals.completed.connect(snapshot)
    try:
        executor = tr.Executor(2, config=config).start()
        monitor = tr.Monitor(executor, policy(attempt_timeout_ms=5_000), config).start()
        monitor.monitor_run(run_id, service)
        fake.corrupt(run_id)
        recorder.wait_for("completed")
        monitor.stop(timeout=5)
        executor.shutdown(timeout=5)
    finally:
        tr.signals.completed.disconnect(snapshot)
    ours = {
        name: daemon
        for name, daemon in seen.items()
        if name.startswith("tinker_recovery") and not name.startswith("tinker_recovery.fake_server")
    }
    assert {
        "tinker_recovery.monitor",
        "tinker_recovery.executor.dispatch",
        "tinker_recovery.executor.scheduler",
    } <= set(ours)
    assert all(ours.values()), ours
    left = [t.name for t in threading.enumerate() if t not in before and t.name in ours]
    assert left in ([], ["tinker_recovery.executor.call"])  # a call thread may still be returning
