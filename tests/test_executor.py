"""Executor: checkpoint choice, client creation, retries on the scheduler, concurrency, shutdown."""

from __future__ import annotations

import logging
import random
import threading

import pytest
from conftest import FakeClient, FakeService, StubRest, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery.errors import ServerError

CP = checkpoint("run-1", "step-000010", minutes=10)


def policy(**overrides):
    settings = {"enabled": True, "jitter": "none", "backoff_ms": 5_000, "max_backoff_ms": 60_000}
    settings.update(overrides)
    return tr.Policy(**settings)


@pytest.fixture
def executor(scheduler):
    ex = tr.Executor(1, scheduler=scheduler)
    ex.start()
    yield ex
    ex.shutdown(timeout=10)


def test_latest_with_optimizer_uses_the_given_checkpoint(executor, recorder):
    service = FakeService()
    future = executor.recover(
        "run-1", service, policy(), last_checkpoint=CP, metadata={"training_client": "old"}
    )
    recovery = future.result(10)
    assert service.calls == [("with_optimizer", CP.tinker_path)]
    assert recovery.checkpoint == CP and recovery.old_client == "old" and recovery.new_run_id == "restored:1"
    assert recovery.step == 10 and recovery.checkpoint_name == "step-000010"
    assert recorder.names() == ["started", "checkpoint_selected", "client_created", "completed"]
    completed = recorder.payloads("completed")[0]
    assert completed["run_id"] == "run-1" and completed["attempt"] == 1 and completed["strategy"] == "latest"
    assert completed["metadata"] == {"training_client": "old"} and completed["client"] is recovery.client


def test_weights_only_calls_the_other_method(executor):
    service = FakeService()
    executor.recover(
        "run-1", service, policy(restore_optimizer=False), last_checkpoint=CP.tinker_path
    ).result(10)
    assert service.calls == [("weights_only", CP.tinker_path)]


def test_checkpoint_from_a_mapping_and_from_the_run(executor):
    service = FakeService()
    executor.recover("run-1", service, policy(), last_checkpoint=CP.to_json()).result(10)
    other = checkpoint("run-2", "step-000020")
    executor.recover("run-2", service, policy(), run=training_run("run-2", other)).result(10)
    assert [path for _, path in service.calls] == [CP.tinker_path, other.tinker_path]


def test_specific_strategy_uses_its_path(executor):
    service = FakeService()
    path = "tinker://run-0/weights/chosen"
    executor.recover(
        "run-1", service, policy(checkpoint_strategy=("specific", path)), last_checkpoint=CP
    ).result(10)
    assert service.calls == [("with_optimizer", path)]


def test_missing_checkpoint_is_fetched_over_rest(scheduler):
    rest = StubRest(runs={"run-1": training_run("run-1", CP)})
    service = FakeService()
    with tr.Executor(1, rest=rest, scheduler=scheduler) as ex:
        ex.recover("run-1", service, policy()).result(10)
    assert rest.calls == [("get_training_run", "run-1")]
    assert service.calls == [("with_optimizer", CP.tinker_path)]


def test_no_checkpoint_and_no_rest_is_fatal_at_once(executor, recorder, scheduler):
    future = executor.recover("run-1", FakeService(), policy())
    with pytest.raises(tr.MissingCheckpoint):
        future.result(10)
    assert recorder.names() == ["started", "failed", "exhausted"]
    assert scheduler.delays == []
    assert recorder.payloads("exhausted")[0]["reason"].startswith("fatal")


def test_a_future_like_result_is_resolved(executor):
    class ClientFuture:
        def __init__(self):
            self.timeouts = []

        def result(self, timeout=None):
            self.timeouts.append(timeout)
            return FakeClient("from-future")

    future_like = ClientFuture()
    service = FakeService([future_like])
    recovery = executor.recover("run-1", service, policy(attempt_timeout_ms=None), last_checkpoint=CP).result(
        10
    )
    assert recovery.client.model_id == "from-future" and future_like.timeouts == [None]


def test_backoff_delays_double_and_cap_on_the_scheduler(executor, scheduler, recorder):
    errors = [ServerError("boom", status_code=503) for _ in range(6)]
    failures = []
    pol = policy(
        max_attempts=7, max_backoff_ms=30_000, on_failure=lambda run_id, error: failures.append(error)
    )
    future = executor.recover("run-1", FakeService(errors), pol, last_checkpoint=CP)
    for n in range(1, 7):
        scheduler.wait_scheduled(n)
        scheduler.fire()
    assert future.result(10).attempts == 7
    assert scheduler.delays == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    assert recorder.count("failed") == 6 and recorder.count("started") == 7 and failures == []


def test_exhausted_after_max_attempts_with_the_last_error(executor, scheduler, recorder):
    errors = [ServerError(f"boom {n}", status_code=500) for n in range(3)]
    failures = []
    pol = policy(on_failure=lambda run_id, error: failures.append((run_id, error)))
    future = executor.recover("run-1", FakeService(errors), pol, last_checkpoint=CP)
    for n in (1, 2):
        scheduler.wait_scheduled(n)
        scheduler.fire()
    with pytest.raises(ServerError, match="boom 2"):
        future.result(10)
    assert failures == [("run-1", errors[2])]
    assert [p["attempt"] for p in recorder.payloads("failed")] == [1, 2, 3]
    assert recorder.payloads("exhausted")[0]["error"] is errors[2]
    assert executor.pending == []


def test_fatal_status_stops_at_once(executor, scheduler, recorder):
    error = tr.BadRequest("bad request", status_code=400)
    future = executor.recover("run-1", FakeService([error]), policy(), last_checkpoint=CP)
    with pytest.raises(tr.BadRequest):
        future.result(10)
    assert scheduler.delays == []
    assert recorder.payloads("exhausted")[0]["reason"] == "fatal: HTTP 400 from the service"


def test_retry_on_can_make_an_error_fatal_or_retryable(executor, scheduler):
    pol = policy(retry_on=lambda error: False if isinstance(error, ServerError) else None)
    future = executor.recover(
        "run-1", FakeService([ServerError("x", status_code=503)]), pol, last_checkpoint=CP
    )
    with pytest.raises(ServerError):
        future.result(10)
    pol = policy(retry_on=lambda error: True)
    future = executor.recover(
        "run-2", FakeService([tr.BadRequest("x", status_code=400)]), pol, last_checkpoint=CP
    )
    scheduler.wait_scheduled(1)
    scheduler.fire()
    assert future.result(10).attempts == 2


def test_disabled_policy_and_duplicates_are_refused(scheduler):
    gate = threading.Event()
    service = FakeService(gate=gate)
    with tr.Executor(1, scheduler=scheduler) as ex:
        with pytest.raises(tr.RecoveryDisabled):
            ex.recover("run-1", service, tr.Policy(), last_checkpoint=CP)
        future = ex.recover("run-1", service, policy(), last_checkpoint=CP)
        with pytest.raises(tr.AlreadyPending):
            ex.recover("run-1", service, policy(), last_checkpoint=CP)
        service.wait_active(1)
        with pytest.raises(tr.AlreadyPending):  # still refused while running
            ex.recover("run-1", service, policy(), last_checkpoint=CP)
        gate.set()
        future.result(10)
        ex.recover("run-1", service, policy(), last_checkpoint=CP).result(10)  # accepted once done


def test_duplicate_refused_while_waiting_for_a_retry(executor, scheduler):
    executor.recover("run-1", FakeService([ServerError("x", status_code=503)]), policy(), last_checkpoint=CP)
    scheduler.wait_scheduled(1)
    with pytest.raises(tr.AlreadyPending):
        executor.recover("run-1", FakeService(), policy(), last_checkpoint=CP)


def test_bad_arguments_are_refused(scheduler):
    with pytest.raises(ValueError, match="max_concurrent"):
        tr.Executor(0)
    with tr.Executor(1, scheduler=scheduler) as ex:
        with pytest.raises(ValueError, match="run_id"):
            ex.recover("a/b", FakeService(), policy())
        with pytest.raises(TypeError, match="policy"):
            ex.recover("run-1", FakeService(), {"enabled": True})
        with pytest.raises(ValueError, match="tinker path"):
            ex.recover("run-1", FakeService(), policy(), last_checkpoint="not-a-path")


def test_concurrency_never_exceeds_max_concurrent(scheduler):
    gate = threading.Event()
    service = FakeService(gate=gate)
    with tr.Executor(3, scheduler=scheduler) as ex:
        futures = [ex.recover(f"run-{n}", service, policy(), last_checkpoint=CP) for n in range(10)]
        service.wait_active(3)
        assert len(ex.pending) == 10
        gate.set()
        for future in futures:
            future.result(10)
    assert service.max_active == 3 and len(service.calls) == 10


def test_callback_and_receiver_exceptions_break_nothing(executor, recorder, caplog):
    def bad_receiver(sender, **payload):
        raise RuntimeError("receiver bug")

    def bad_callback(*args):
        raise RuntimeError("callback bug")

    tr.signals.completed.connect(bad_receiver)
    try:
        with caplog.at_level(logging.ERROR, logger="tinker_recovery"):
            pol = policy(on_recovery=bad_callback)
            executor.recover("run-1", FakeService(), pol, last_checkpoint=CP).result(10)
            executor.recover("run-2", FakeService(), pol, last_checkpoint=CP).result(10)
            assert executor.join(10)
    finally:
        tr.signals.completed.disconnect(bad_receiver)
    assert recorder.count("completed") == 2  # the other receiver still ran, twice
    by_logger = [(r.name, r.getMessage()) for r in caplog.records]
    assert sum(name == "tinker_recovery.signals" and "raised" in m for name, m in by_logger) == 2
    assert sum(m.startswith("on_recovery callback") for _, m in by_logger) == 2
    assert all(r.exc_info for r in caplog.records if "raised" in r.getMessage())


def test_slow_callback_does_not_block_other_recoveries(scheduler):
    release = threading.Event()
    entered = threading.Event()

    def slow(old, new, cp):
        entered.set()
        release.wait(10)

    with tr.Executor(2, scheduler=scheduler) as ex:
        first = ex.recover("run-1", FakeService(), policy(on_recovery=slow), last_checkpoint=CP)
        assert entered.wait(10)
        ex.recover("run-2", FakeService(), policy(), last_checkpoint=CP).result(10)
        release.set()
        first.result(10)


def test_shutdown_reports_waiting_retries(scheduler, recorder):
    failures = []
    ex = tr.Executor(1, scheduler=scheduler).start()
    pol = policy(on_failure=lambda run_id, error: failures.append(run_id))
    future = ex.recover("run-1", FakeService([ServerError("x", status_code=503)]), pol, last_checkpoint=CP)
    scheduler.wait_scheduled(1)
    ex.shutdown(timeout=10)
    with pytest.raises(tr.Shutdown):
        future.result(1)
    failed = recorder.payloads("failed")
    assert len(failed) == 2 and isinstance(failed[1]["error"], tr.Shutdown)
    assert recorder.payloads("exhausted")[0]["reason"].startswith("shutdown")
    assert failures == ["run-1"]
    with pytest.raises(tr.Shutdown):
        ex.recover("run-2", FakeService(), policy(), last_checkpoint=CP)
    ex.shutdown(timeout=1)  # idempotent


def test_shutdown_reports_queued_requests(scheduler, recorder):
    gate = threading.Event()
    ex = tr.Executor(1, scheduler=scheduler).start()
    service = FakeService(gate=gate)
    running = ex.recover("run-1", service, policy(), last_checkpoint=CP)
    queued = ex.recover("run-2", service, policy(), last_checkpoint=CP)
    service.wait_active(1)
    stopper = threading.Thread(target=ex.shutdown, kwargs={"timeout": 10})
    stopper.start()
    with pytest.raises(tr.Shutdown):
        queued.result(10)
    gate.set()
    stopper.join(10)
    assert running.result(1).run_id == "run-1"
    assert [p["run_id"] for p in recorder.payloads("exhausted")] == ["run-2"]


def test_shutdown_returns_within_its_timeout_with_a_hung_attempt(scheduler, recorder):
    gate = threading.Event()
    service = FakeService(gate=gate)
    ex = tr.Executor(1, scheduler=scheduler).start()
    future = ex.recover("run-1", service, policy(), last_checkpoint=CP)
    service.wait_active(1)
    done = threading.Event()
    threading.Thread(target=lambda: (ex.shutdown(timeout=0.2), done.set())).start()
    assert done.wait(5)
    with pytest.raises(tr.Shutdown, match="cut short at shutdown"):  # cut short, and reported
        future.result(5)
    assert recorder.names() == ["started", "checkpoint_selected", "failed", "exhausted"]
    assert recorder.payloads("exhausted")[0]["reason_class"] == "shutdown"
    gate.set()


def test_real_scheduler_waits_on_the_injected_clock(recorder):
    clock = tr.ManualClock()
    with tr.Executor(1, clock=clock) as ex:
        future = ex.recover(
            "run-1", FakeService([ServerError("x", status_code=503)]), policy(), last_checkpoint=CP
        )
        recorder.wait_for("failed")
        clock.wait_for_deadline(1000.0 + 5.0)  # the retry's due time is computed: the scheduler waits for it
        assert not future.done()
        clock.advance(4.9)
        assert not future.done()
        clock.advance(0.1)
        assert future.result(10).attempts == 2


def test_full_jitter_draws_within_the_delay(scheduler):
    rng = random.Random(7)
    with tr.Executor(1, scheduler=scheduler, rng=rng) as ex:
        ex.recover(
            "run-1",
            FakeService([ServerError("x", status_code=503)]),
            policy(jitter="full"),
            last_checkpoint=CP,
        )
        scheduler.wait_scheduled(1)
    expected = 5.0 * random.Random(7).random()
    assert scheduler.delays == [pytest.approx(expected)] and 0 <= scheduler.delays[0] <= 5.0


def test_a_run_already_recovered_is_not_recovered_twice(executor):
    # Two monitors sharing an executor: the second reads the old run corrupted only after the first
    # monitor's recovery completed. It must follow that recovery, not create a second restored run.
    service = FakeService()
    first = executor.recover("run-1", service, policy(), last_checkpoint=CP)
    recovery = first.result(10)
    again = executor.recover("run-1", service, policy(), last_checkpoint=CP)
    assert again is first and again.result(10) is recovery
    assert service.calls == [("with_optimizer", CP.tinker_path)]


def test_two_monitors_follow_one_recovery_even_when_the_second_reads_it_late(executor, recorder):
    from test_monitor import ScriptedRest, make_monitor

    service = FakeService()
    rest = ScriptedRest({"run-1": [True], "restored:1": [False]})
    first = make_monitor(executor, rest)
    one = first.monitor_run("run-1", service)
    assert one.wait_for_recovery(10).new_run_id == "restored:1"
    second = make_monitor(executor, rest)  # starts after the recovery completed; run-1 still reads corrupted
    two = second.monitor_run("run-1", service)
    assert two.wait_for_recovery(10).new_run_id == "restored:1"
    assert len(service.calls) == 1
    first.stop()
    second.stop()
