"""Executor against careless users and odd services: BaseException in library threads, shutdown from
callbacks and receivers, recover before start, the payload contract, the Monitor-facing methods."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone

import pytest
from conftest import FakeClient, FakeService, StubRest, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery import events
from tinker_recovery.errors import ServerError

CP = checkpoint("run-1", "step-000010", minutes=10)
COMMON = {"run_id", "attempt", "strategy", "metadata", "time", "lineage_id", "recovery_id"}


def policy(**overrides):
    return tr.Policy(**{"enabled": True, "jitter": "none", **overrides})


class RaisingService(FakeService):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def create_training_client_from_state_with_optimizer(self, path):
        raise self.error


@pytest.mark.parametrize("raised", [KeyboardInterrupt("in create"), SystemExit(2), GeneratorExit()])
def test_base_exception_from_the_create_call_fails_the_future_and_frees_the_run(scheduler, recorder, raised):
    with tr.Executor(1, scheduler=scheduler) as ex:
        future = ex.recover("run-1", RaisingService(raised), policy(), last_checkpoint=CP)
        with pytest.raises(tr.RecoveryError, match=type(raised).__name__) as info:
            future.result(10)
        assert info.value.__cause__ is raised
        assert ex.join(10) and ex.pending == []
        assert ex.recover("run-1", FakeService(), policy(), last_checkpoint=CP).result(10)  # not left pending
    assert scheduler.delays == []  # never retried
    assert recorder.payloads("exhausted")[0]["reason_class"] == "interrupted"
    assert recorder.names()[:4] == ["started", "checkpoint_selected", "failed", "exhausted"]


def test_base_exception_from_retry_on_and_callbacks_breaks_nothing(scheduler, recorder):
    def retry_on(error):
        raise KeyboardInterrupt

    def on_failure(run_id, error):
        raise SystemExit(1)

    def on_recovery(old, new, cp):
        raise GeneratorExit

    with tr.Executor(1, scheduler=scheduler) as ex:
        pol = policy(retry_on=retry_on, on_failure=on_failure, on_recovery=on_recovery, max_attempts=1)
        with pytest.raises(ServerError):
            ex.recover(
                "run-1", FakeService([ServerError("x", status_code=503)]), pol, last_checkpoint=CP
            ).result(10)
        assert ex.recover("run-2", FakeService(), pol, last_checkpoint=CP).result(10).run_id == "run-2"
        assert ex.join(10)
        assert ex.recover("run-3", FakeService(), policy(), last_checkpoint=CP).result(10)  # workers alive


def test_a_receiver_raising_system_exit_does_not_lose_the_recovery(scheduler, recorder):
    def receiver(sender, **payload):
        raise SystemExit("receiver")

    tr.signals.checkpoint_selected.connect(receiver)
    try:
        with tr.Executor(1, scheduler=scheduler) as ex:
            assert ex.recover("run-1", FakeService(), policy(), last_checkpoint=CP).result(10).new_run_id
    finally:
        tr.signals.checkpoint_selected.disconnect(receiver)
    assert recorder.count("completed") == 1


@pytest.mark.parametrize("where", ["on_recovery", "on_failure", "completed", "exhausted"])
def test_shutdown_from_a_callback_or_receiver_returns(scheduler, where):
    box = {}
    returned = threading.Event()

    def stop(*args, **kwargs):
        box["ex"].shutdown()  # no time-out: must not wait for its own thread
        returned.set()

    fails = where in ("on_failure", "exhausted")
    pol = policy(max_attempts=1, **({where: stop} if where.startswith("on_") else {}))
    signal = getattr(tr.signals, where, None)
    if signal is not None:
        signal.connect(stop)
    try:
        ex = box["ex"] = tr.Executor(1, scheduler=scheduler).start()
        outcomes = [tr.BadRequest("no", status_code=400)] if fails else []
        future = ex.recover("run-1", FakeService(outcomes), pol, last_checkpoint=CP)
        assert returned.wait(10)
        assert future.exception(10) is not None if fails else future.result(10)
    finally:
        if signal is not None:
            signal.disconnect(stop)
        box["ex"].shutdown(timeout=5)


def test_recover_before_start_then_shutdown_reports_and_resolves(recorder):
    ex = tr.Executor(1)
    future = ex.recover("run-1", FakeService(), policy(), last_checkpoint=CP)
    ex.shutdown(timeout=5)
    with pytest.raises(tr.Shutdown, match="queued"):
        future.result(1)
    assert recorder.names() == ["failed", "exhausted"]
    assert recorder.payloads("exhausted")[0]["reason_class"] == "shutdown"


def test_shutdown_timeout_is_kept_with_many_hung_attempts(scheduler):
    gate = threading.Event()
    service = FakeService(gate=gate)
    ex = tr.Executor(3, scheduler=scheduler).start()
    futures = [ex.recover(f"run-{n}", service, policy(), last_checkpoint=CP) for n in range(5)]
    service.wait_active(3)
    clock = tr.SystemClock()
    began = clock.monotonic()
    ex.shutdown(timeout=0.3)
    elapsed = clock.monotonic() - began
    assert elapsed < 0.3 + 0.5, elapsed
    for future in futures:
        assert isinstance(future.exception(5), tr.Shutdown)
    gate.set()


def test_shutdown_from_many_threads_at_once_returns_within_its_time_out(scheduler, recorder):
    # 11.5: shutdown() may be called from many threads at once, with an attempt hung in its create
    # call; each call returns within its time-out and the recovery is reported once.
    import time

    gate = threading.Event()
    service = FakeService(gate=gate)
    ex = tr.Executor(1, scheduler=scheduler).start()
    future = ex.recover("run-1", service, policy(), last_checkpoint=CP)
    service.wait_active(1)
    start, took, errors = threading.Barrier(8), [], []

    def stop():
        try:
            start.wait(10)
            began = time.monotonic()
            ex.shutdown(timeout=0.5)
            took.append(time.monotonic() - began)
        except BaseException as error:  # any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=stop, name=f"test.shutdown-{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    try:
        assert errors == [] and len(took) == 8 and max(took) < 0.5 + 0.5, took
        # The attempt is cut short while its create call still hangs. The gate opens only after: opened
        # before, the late create call could complete the recovery first (seen 1 run in 20).
        assert isinstance(future.exception(5), tr.Shutdown)
        assert recorder.count("exhausted") == 1
    finally:
        gate.set()


def test_payloads_follow_the_contract(scheduler, recorder):
    clock = tr.ManualClock(wall_start=datetime(2026, 3, 1, tzinfo=timezone.utc))
    service = FakeService([ServerError("x", status_code=503)])
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        future = ex.recover("run-1", service, policy(), last_checkpoint=CP, metadata={"k": "v"})
        scheduler.wait_scheduled(1)
        clock.advance(7.0)
        scheduler.fire()
        recovery = future.result(10)
    for event, _, payload in recorder.events:
        assert set(payload) >= COMMON, event
        assert payload["recovery_id"] == recovery.recovery_id and payload["lineage_id"] == "run-1"
        assert payload["time"].tzinfo is not None
    failed = recorder.payloads("failed")[0]
    assert failed["reason_class"] == "server_error" and failed["duration_s"] == 0.0
    completed = recorder.payloads("completed")[0]
    assert completed["new_run_id"] == recovery.new_run_id == "restored:2"
    assert completed["duration_s"] == 7.0  # from recover() to completion, on the executor's clock
    assert completed["time"] == datetime(2026, 3, 1, 0, 0, 7, tzinfo=timezone.utc)
    assert recorder.payloads("client_created")[0]["new_run_id"] == "restored:2"
    assert recorder.payloads("exhausted") == []
    assert recovery.lineage_id == "run-1" and len(recovery.recovery_id) == 32


def test_lineage_future_of_and_a_given_recovery_id(scheduler, recorder):
    gate = threading.Event()
    with tr.Executor(1, scheduler=scheduler) as ex:
        first = ex.recover("run-1", FakeService(), policy(), last_checkpoint=CP).result(10)
        assert ex.lineage_of(first.new_run_id) == "run-1" and ex.lineage_of("other") == "other"
        future = ex.recover(
            first.new_run_id, FakeService(gate=gate), policy(), last_checkpoint=CP, recovery_id="resumed-1"
        )
        assert ex.future_of(first.new_run_id) is future and ex.future_of("nope") is None
        gate.set()
        second = future.result(10)
        assert ex.future_of(first.new_run_id) is None
        assert second.lineage_id == "run-1" and second.recovery_id == "resumed-1"
        assert ex.lineage_of(second.new_run_id) == "run-1"
        third = ex.recover("x-1", FakeService(), policy(), last_checkpoint=CP, lineage_id="root-9").result(10)
        assert third.lineage_id == "root-9"
    with pytest.raises(ValueError, match="recovery_id"):
        tr.Executor(1).recover("run-1", FakeService(), policy(), recovery_id="")


def test_seed_budget_keeps_a_restarted_watchers_budget(scheduler):
    clock = tr.ManualClock(wall_start=datetime(2026, 1, 1, 12, tzinfo=timezone.utc))
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        now = clock.now()
        ex.seed_budget("run-1", [now - timedelta(seconds=50), now - timedelta(seconds=10)])
        with pytest.raises(tr.BudgetExhausted, match="2 of 2"):
            ex.recover(
                "run-1", FakeService(), policy(max_recoveries=2, recovery_window_s=60), last_checkpoint=CP
            ).result(10)
        clock.advance(10.0)  # the restart 50 s ago leaves the window at exactly 60 s
        assert ex.recover(
            "run-1", FakeService(), policy(max_recoveries=2, recovery_window_s=60), last_checkpoint=CP
        ).result(10)
        with pytest.raises(TypeError, match="time-zone aware"):
            ex.seed_budget("run-1", [datetime(2026, 1, 1)])


def test_huge_backoff_and_attempt_timeout_never_kill_a_thread(recorder):
    service = FakeService([ServerError("x", status_code=503)])
    pol = policy()
    for field in ("backoff_ms", "max_backoff_ms", "attempt_timeout_ms"):  # past Policy's own checks
        object.__setattr__(pol, field, 10**13)
    with tr.Executor(1) as ex:
        future = ex.recover("run-1", service, pol, last_checkpoint=CP)
        recorder.wait_for("failed")
        assert ex.recover("run-2", FakeService(), pol, last_checkpoint=CP).result(10)  # others go on
        assert not future.done()
    assert isinstance(future.exception(5), tr.Shutdown)


def test_attempt_timeout_covers_the_rest_fetch(recorder):
    release = threading.Event()

    class SlowRest(StubRest):
        def get_training_run(self, run_id, **_):
            release.wait(10)
            return training_run(run_id, CP)

    clock = tr.ManualClock()
    with tr.Executor(1, rest=SlowRest(), clock=clock) as ex:
        future = ex.recover("run-1", FakeService(), policy(attempt_timeout_ms=3_000, max_attempts=1))
        recorder.wait_for("started")
        clock.wait_for_deadline(1000.0 + 3.0)
        clock.advance(3.0)
        with pytest.raises(tr.AttemptTimeout, match="3000 ms"):
            future.result(10)
        release.set()
    assert recorder.payloads("failed")[0]["reason_class"] == "attempt_timeout"


def test_async_create_methods_are_awaited(scheduler):
    class AsyncService:
        def __init__(self):
            self.calls = []

        async def create_training_client_from_state_with_optimizer(self, path, user_metadata=None):
            await asyncio.sleep(0)
            self.calls.append((path, user_metadata))
            return FakeClient("async-1")

        async def create_training_client_from_state(self, path):
            raise AssertionError("not this one")

    service = AsyncService()
    with tr.Executor(1, scheduler=scheduler) as ex:
        recovery = ex.recover("run-1", service, policy(), last_checkpoint=CP).result(10)
    assert recovery.client.model_id == "async-1" and recovery.new_run_id == "async-1"
    assert service.calls[0][0] == CP.tinker_path
    assert service.calls[0][1]["tinker_recovery.source_checkpoint"] == CP.tinker_path


def test_policy_restore_is_used_and_its_awaitable_awaited(scheduler):
    seen = []

    async def restore(service, cp, run):
        seen.append((cp, run))
        return FakeClient("mine")

    run = training_run("run-1", CP)
    with tr.Executor(1, scheduler=scheduler) as ex:
        service = FakeService()
        recovery = ex.recover("run-1", service, policy(restore=restore), run=run).result(10)
    assert recovery.new_run_id == "mine" and seen == [(CP, run)] and service.calls == []


def test_policy_restore_taking_user_metadata_is_given_the_restored_runs_identity(scheduler):
    # Issues 12.2/12.5: a restore of one's own got no user_metadata, so its run carried neither the
    # original's metadata nor the recovery id a retry adopts it by. A callable that takes a
    # ``user_metadata`` keyword is given it, like the service's create calls; one that does not is
    # called as before.
    import attrs

    seen = []

    def restore(service, cp, run, *, user_metadata):
        seen.append(user_metadata)
        return FakeClient("mine")

    def plain(service, cp, run):
        return FakeClient("plain")

    run = attrs.evolve(training_run("run-1", CP), user_metadata={"renderer_name": "llama3"})
    with tr.Executor(1, scheduler=scheduler) as ex:
        recovery = ex.recover("run-1", FakeService(), policy(restore=restore), run=run).result(10)
        assert (
            ex.recover("run-2", FakeService(), policy(restore=plain), run=run).result(10).new_run_id
            == "plain"
        )
    assert seen == [
        {
            "renderer_name": "llama3",
            "tinker_recovery.lineage_id": "run-1",
            "tinker_recovery.recovery_id": recovery.recovery_id,
            "tinker_recovery.source_checkpoint": CP.tinker_path,
        }
    ]


def test_restored_run_keeps_the_user_metadata(scheduler):
    class MetaService(FakeService):
        def create_training_client_from_state_with_optimizer(self, path, user_metadata=None):
            self.metadata = user_metadata
            return super().create_training_client_from_state_with_optimizer(path)

    import attrs

    run = attrs.evolve(training_run("run-1", CP), user_metadata={"renderer_name": "llama3"})
    service = MetaService()
    with tr.Executor(1, scheduler=scheduler) as ex:
        recovery = ex.recover("run-1", service, policy(), run=run).result(10)
    assert service.metadata == {
        "renderer_name": "llama3",
        "tinker_recovery.lineage_id": "run-1",
        "tinker_recovery.recovery_id": recovery.recovery_id,
        "tinker_recovery.source_checkpoint": CP.tinker_path,
    }


def test_reason_classes_are_from_the_shared_list(scheduler, recorder):
    with tr.Executor(1, scheduler=scheduler) as ex:
        ex.recover("run-1", FakeService([tr.BadRequest("x", status_code=400)]), policy(), last_checkpoint=CP)
        recorder.wait_for("exhausted")
    assert {p["reason_class"] for p in recorder.payloads("failed")} <= set(events.REASON_CLASSES)


def test_a_nan_budget_window_is_refused_at_recover(scheduler):
    import attrs

    pol = policy()
    object.__setattr__(pol, "recovery_window_s", float("nan"))  # past Policy's own check
    with tr.Executor(1, scheduler=scheduler) as ex, pytest.raises(ValueError, match="recovery_window_s"):
        ex.recover("run-1", FakeService(), pol, last_checkpoint=CP)
    assert attrs.has(tr.Policy)


def test_a_retry_waits_for_the_previous_create_call_and_takes_its_late_client(scheduler, recorder):
    clock = tr.ManualClock()
    gate = threading.Event()
    service = FakeService(gate=gate)
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        future = ex.recover("run-1", service, policy(attempt_timeout_ms=2_000), last_checkpoint=CP)
        service.wait_active(1)
        clock.wait_for_deadline(1000.0 + 2.0)
        clock.advance(2.0)
        recorder.wait_for("failed")
        scheduler.wait_scheduled(1)
        scheduler.fire()  # attempt 2 begins while attempt 1's create call still runs
        gate.set()
        recovery = future.result(10)
    assert len(service.calls) == 1  # never a second create call
    assert recovery.attempts == 2 and recovery.new_run_id == "restored:1"
    assert recorder.payloads("failed")[0]["reason_class"] == "attempt_timeout"


def test_a_retry_does_not_overlap_a_create_call_that_still_hangs(scheduler, recorder):
    clock = tr.ManualClock()
    gate = threading.Event()
    service = FakeService(gate=gate)
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        future = ex.recover(
            "run-1", service, policy(attempt_timeout_ms=200, max_attempts=2), last_checkpoint=CP
        )
        service.wait_active(1)
        clock.wait_for_deadline(1000.0 + 0.2)
        clock.advance(0.2)
        scheduler.wait_scheduled(1)
        scheduler.fire()
        with pytest.raises(tr.AttemptTimeout, match="previous attempt's create call is still running"):
            future.result(10)  # attempt 2 gave up within its own 0.2 s, starting nothing
        assert len(service.calls) == 1
        gate.set()


@pytest.mark.parametrize("timeout", [float("nan"), -1.0])
def test_bad_timeouts_of_join_and_shutdown_are_refused(scheduler, timeout):
    ex = tr.Executor(1, scheduler=scheduler)
    with pytest.raises(ValueError, match="timeout"):
        ex.join(timeout)
    with pytest.raises(ValueError, match="timeout"):
        ex.shutdown(timeout=timeout)
    assert ex.join(1e13) is True  # beyond Event.wait's limit: clamped, and nothing is pending
    ex.shutdown(timeout=1)


def test_a_lineage_recovered_1000_times_keeps_a_bounded_number_of_clients(scheduler):
    # Issue 12.8: a lineage recovered 1,000 times kept all 1,000 restored clients (the executor's
    # "already recovered" answers held every Recovery); it keeps RECOVERED_PER_LINEAGE of them.
    import gc
    import weakref

    from tinker_recovery.executor import RECOVERED_PER_LINEAGE

    refs = []

    class Tracked(FakeService):
        def _create(self, kind, path):
            client = super()._create(kind, path)
            refs.append(weakref.ref(client))
            return client

    service, pol = Tracked(), policy(max_recoveries=10_000)
    with tr.Executor(1, scheduler=scheduler) as ex:
        run_id = "run-0"
        for _ in range(1_000):
            recovery = ex.recover(run_id, service, pol, last_checkpoint=CP).result(10)
            run_id = recovery.new_run_id
        newest = ex.recover(recovery.run_id, service, pol, last_checkpoint=CP)
        assert newest.result(10) is recovery  # the newest is still answered: one truth per run
        assert ex.recover("run-0", service, pol, last_checkpoint=CP).result(10) is not recovery
        del recovery, newest
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
    assert alive <= RECOVERED_PER_LINEAGE + 1, alive


@pytest.mark.parametrize("pace", ["drip", "stall"])
def test_attempt_timeout_bounds_a_drip_fed_or_stalled_rest_fetch_over_a_real_socket(recorder, pace):
    # Issue 11.2 with a real server on 127.0.0.1: the attempt's REST look-up of the run drips its body
    # (a byte every 0.5 s) or stalls after the headers; the attempt ends at attempt_timeout_ms with
    # AttemptTimeout, not at the request's time-out with RequestTimeout, and its Future resolves.
    import time

    from hostile_server import scripted_server

    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
    with scripted_server() as server:
        server.drip(head, b" " * 500, 0.5 if pace == "drip" else 60.0)
        config = tr.Config(
            api_key="tml-" + "h" * 40,
            base_url=server.base_url,
            timeout_s=3.0,
            retry_max_time_s=3.0,
            max_retries=0,
        )
        with tr.Executor(1, config=config) as ex:
            began = time.monotonic()
            future = ex.recover("run-1", FakeService(), policy(attempt_timeout_ms=1_000, max_attempts=1))
            with pytest.raises(tr.AttemptTimeout, match="1000 ms"):
                future.result(10)
            elapsed = time.monotonic() - began
            assert server.wait_requests(1, "/api/v1/training_runs/run-1")
    assert 0.9 <= elapsed < 2.5, elapsed  # the request alone would have run 3 s
    assert recorder.payloads("failed")[0]["reason_class"] == "attempt_timeout"
