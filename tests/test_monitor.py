"""Monitor: polling, detection, poll errors, confirmation, dropping, following, handle, journal.

Every monitor here runs on a ManualClock: the first poll of a run is sent at once, later ones only
when a test asks (poll_once, poll_now) or advances the clock, so call counts are exact.
"""

from __future__ import annotations

import threading

import pytest
from conftest import FakeService, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery.errors import NotFound, ServerError

CP = checkpoint("run-1", "step-000010", minutes=10)


def policy(**overrides):
    return tr.Policy(**{"enabled": True, "jitter": "none", "poll_interval_ms": 1_000, **overrides})


class ScriptedRest:
    """Answers polls from a per-run script (a list consumed one per poll; the last answer repeats).

    An answer is a bool (corrupted or not) or an exception to raise. ``list_training_runs`` serves
    the same answers in pages, for list mode.
    """

    def __init__(self, scripts: dict[str, list], extra_runs: int = 0) -> None:
        self.scripts = {run_id: list(script) for run_id, script in scripts.items()}
        self.extra_runs = extra_runs
        self.calls: list[tuple[str, object]] = []
        self._lock = threading.Condition()

    def wait_calls(self, count: int, timeout: float = 10.0) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.calls) >= count, timeout):
                raise AssertionError(f"expected {count} REST calls, got {self.calls}")

    def _answer(self, run_id: str):
        script = self.scripts[run_id]
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, BaseException):
            raise answer
        return training_run(run_id, checkpoint(run_id, "step-000010"), corrupted=answer)

    def get_training_run(self, run_id, *, timeout_s=None, max_retries=None):
        with self._lock:
            self.calls.append(("get", run_id))
            self._lock.notify_all()
            if run_id not in self.scripts:
                raise NotFound(f"{run_id} not found", status_code=404)
            return self._answer(run_id)

    def list_training_runs(self, limit=20, offset=0, *, timeout_s=None, max_retries=None):
        with self._lock:
            self.calls.append(("list", offset))
            self._lock.notify_all()
            ids = sorted(self.scripts) + [f"other-{n}" for n in range(self.extra_runs)]
            page = ids[offset : offset + limit]
            runs = [self._answer(i) if i in self.scripts else training_run(i, corrupted=False) for i in page]
            return runs, tr.Cursor(offset=offset, limit=limit, total_count=len(ids))


@pytest.fixture
def executor(scheduler):
    ex = tr.Executor(2, scheduler=scheduler).start()
    yield ex
    ex.shutdown(timeout=10)


def make_monitor(executor, rest, **kwargs):
    """A monitor on a ManualClock (unless told otherwise): after its first poll, runs are polled
    only when a test asks (poll_once / poll_now) or advances the clock."""
    kwargs.setdefault("poll_timeout_s", 1.0)
    kwargs.setdefault("clock", tr.ManualClock())
    return tr.Monitor(executor, kwargs.pop("policy", policy()), rest=rest, **kwargs)


def watch(monitor, rest, run_id, *args, calls=None, **kwargs):
    """monitor_run, then wait for the first poll (made at once) to have been sent."""
    handle = monitor.monitor_run(run_id, FakeService(), *args, **kwargs)
    rest.wait_calls(len(rest.calls) + 1 if calls is None else calls)
    return handle


def test_corrupted_run_is_detected_recovered_and_followed(executor, recorder):
    rest = ScriptedRest({"run-1": [False, False, True], "restored:1": [False]})
    monitor = make_monitor(executor, rest)
    handle = watch(monitor, rest, "run-1", {"owner": "me"}, training_client="old")
    assert monitor.poll_once() == 1 and recorder.names() == []
    monitor.poll_once()
    recorder.wait_for("completed")
    assert handle.wait(10)
    detected = recorder.payloads("detected")[0]
    assert detected["attempt"] == 0 and detected["checkpoint"].name == "step-000010"
    assert detected["metadata"] == {"training_client": "old", "owner": "me"}
    assert detected["lineage_id"] == "run-1" and detected["recovery_id"] is None
    assert detected["time"] == tr.ManualClock().now()
    assert handle.client.model_id == "restored:1" and handle.run_id == "restored:1"
    recovery = handle.take_recovery()
    assert recovery.old_client == "old" and recovery.step == 10 and handle.take_recovery() is None
    assert monitor.watched == ["restored:1"]
    rest.wait_calls(4)  # the restored run is polled at once
    assert rest.calls[-1] == ("get", "restored:1")
    assert recorder.payloads("completed")[0]["metadata"]["owner"] == "me"
    monitor.stop()


def test_healthy_run_stays_watched_and_sends_nothing(executor, recorder):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest)
    handle = watch(monitor, rest, "run-1")
    for _ in range(3):
        assert monitor.poll_once() == 1
    assert recorder.names() == [] and monitor.watched == ["run-1"] and handle.watching
    assert rest.calls == [("get", "run-1")] * 4  # the first poll, then one per poll_once
    monitor.stop()


def test_poll_error_keeps_the_run_watched(executor, recorder):
    rest = ScriptedRest({"run-1": [ServerError("HTTP 500", status_code=500), False]})
    monitor = make_monitor(executor, rest)
    watch(monitor, rest, "run-1")
    error = recorder.wait_for("poll_error")[0]
    assert isinstance(error["error"], ServerError) and error["attempt"] == 0
    assert error["reason"] == "poll failed: ServerError" and error["reason_class"] == "server_error"
    assert monitor.watched == ["run-1"]
    monitor.stop()


def test_confirm_polls_needs_consecutive_corrupted_reads(executor, recorder):
    rest = ScriptedRest({"run-1": [True, False, True, ServerError("x", status_code=503), True, False]})
    monitor = make_monitor(executor, rest, policy=policy(confirm_polls=2))
    handle = watch(monitor, rest, "run-1")  # corrupted
    for _ in range(3):  # healthy (resets), corrupted, error (never counts)
        monitor.poll_once()
    assert recorder.count("detected") == 0 and not handle.recovering
    monitor.poll_once()  # the second corrupted read in a row
    recorder.wait_for("completed")
    assert handle.wait(10) and recorder.count("detected") == 1
    monitor.stop()


def test_run_answering_404_is_dropped_after_max_poll_errors(executor, recorder):
    rest = ScriptedRest({})
    monitor = make_monitor(executor, rest, policy=policy(max_poll_errors=3))
    handle = watch(monitor, rest, "gone")
    for _ in range(2):
        monitor.poll_once()
    reasons = [p["reason"] for p in recorder.wait_for("poll_error", 3)]
    assert reasons[:2] == ["poll failed: NotFound"] * 2
    assert reasons[2] == "dropped from monitoring: not found for 3 consecutive polls"
    assert monitor.watched == [] and not handle.watching
    with pytest.raises(tr.NotFound, match="not found for 3 consecutive polls"):
        handle.wait_for_recovery(timeout=0)  # at once, saying why
    assert monitor.poll_once() == 0 and len(rest.calls) == 3
    monitor.stop()


def test_monitor_run_refusals(executor):
    rest = ScriptedRest({})
    with pytest.raises(tr.RecoveryDisabled):
        tr.Monitor(executor, tr.Policy(), rest=rest).monitor_run("run-1", FakeService())
    with pytest.raises(tr.NoExecutor):
        tr.Monitor(None, policy(), rest=rest).monitor_run("run-1", FakeService())
    with pytest.raises(ValueError, match="REST"):
        tr.Monitor(executor, policy()).monitor_run("run-1", FakeService())
    with pytest.raises(ValueError, match="run_id"):
        tr.Monitor(executor, policy(), rest=rest).monitor_run("../x", FakeService())
    with pytest.raises(TypeError, match="service: object has no create_training_client_from_state"):
        tr.Monitor(executor, policy(), rest=rest).monitor_run("run-1", object())
    with pytest.raises(ValueError, match="poll_mode"):
        tr.Monitor(executor, policy(), rest=rest, poll_mode="sometimes")
    monitor = make_monitor(executor, rest)
    monitor.stop()
    with pytest.raises(tr.Shutdown):
        monitor.monitor_run("run-1", FakeService())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_timeout_s", float("nan")),
        ("poll_timeout_s", float("inf")),
        ("poll_timeout_s", 1e300),
        ("poll_timeout_s", 0),
        ("poll_concurrency", 0),
        ("poll_concurrency", True),
        ("list_page_size", 0),
    ],
)
def test_bad_numbers_are_refused_naming_the_field(executor, field, value):
    with pytest.raises((ValueError, TypeError), match=rf"^{field}: "):
        tr.Monitor(executor, policy(), rest=ScriptedRest({}), **{field: value})


def test_a_poll_interval_beyond_what_waits_accept_is_refused(executor):
    with pytest.raises(ValueError, match="poll_interval_ms"):
        tr.Monitor(executor, policy(poll_interval_ms=10**13), rest=ScriptedRest({}))


def test_policy_falls_back_to_the_config(executor):
    config = tr.Config(api_key="tml-test", base_url="http://127.0.0.1:1", recovery={"enabled": True})
    monitor = tr.Monitor(executor, config=config)
    assert monitor.policy.enabled
    monitor.stop()


def test_stop_monitoring_leaves_nothing_behind(executor, recorder):
    rest = ScriptedRest({"run-1": [False, True]})
    monitor = make_monitor(executor, rest)
    handle = watch(monitor, rest, "run-1", training_client=object())
    assert monitor.stop_monitoring("run-1") and not monitor.stop_monitoring("run-1")
    assert monitor.poll_once() == 0 and recorder.names() == [] and not handle.watching
    assert monitor.handle("run-1") is None
    assert monitor._watches._watched == {} and monitor._watches._recovering == {}
    assert monitor._poller._states == {} and len(monitor._poller._schedule) == 0
    monitor.stop()


def test_watching_a_watched_run_returns_its_handle(executor):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest)
    handle = watch(monitor, rest, "run-1")
    assert monitor.monitor_run("run-1", FakeService()) is handle and monitor.handle("run-1") is handle
    monitor.stop()


def test_monitor_run_on_a_monitor_not_started_starts_it(executor, caplog):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest)
    with caplog.at_level("INFO", logger="tinker_recovery.monitor"):
        watch(monitor, rest, "run-1")
    assert "starting the monitor" in caplog.text
    monitor.stop()


def test_exhausted_recovery_marks_the_handle(executor, recorder):
    rest = ScriptedRest({"run-1": [True]})
    monitor = make_monitor(executor, rest)
    error = tr.BadRequest("refused", status_code=400)
    handle = monitor.monitor_run("run-1", FakeService([error]))
    recorder.wait_for("exhausted")
    assert handle.wait(10)
    assert handle.error is error and not handle.watching and monitor.watched == []
    monitor.stop()


def test_list_mode_detects_a_corrupted_run_among_many(executor, recorder):
    scripts = {f"run-{n:03d}": [False] for n in range(250)}
    scripts["run-007"] = [True]
    rest = ScriptedRest(scripts, extra_runs=30)
    monitor = make_monitor(executor, rest, poll_mode="list", list_page_size=100)
    for run_id in scripts:
        monitor.monitor_run(run_id, FakeService())
    assert [p["run_id"] for p in recorder.wait_for("completed")] == ["run-007"]
    monitor.stop()


def test_list_mode_lists_once_per_interval(executor):
    scripts = {f"run-{n:03d}": [False] for n in range(250)}
    rest = ScriptedRest(scripts, extra_runs=30)
    monitor = make_monitor(executor, rest, poll_mode="list", list_page_size=100)
    for run_id in scripts:
        monitor.monitor_run(run_id, FakeService())
    monitor.poll_once()
    before = len(rest.calls)
    monitor.poll_once()
    assert sorted(rest.calls[before:]) == [("list", 0), ("list", 100), ("list", 200)]
    monitor.stop()


def test_auto_mode_polls_each_run_first_then_lists_when_cheaper(executor):
    many = ScriptedRest({f"run-{n:03d}": [False] for n in range(50)})
    monitor = make_monitor(executor, many)
    monitor.start()
    for run_id in many.scripts:
        monitor.monitor_run(run_id, FakeService())
    many.wait_calls(50)
    assert all(kind == "get" for kind, _ in many.calls[:50])  # never more than per-run before the first look
    before = len(many.calls)
    monitor.poll_once()
    assert many.calls[before:] == [("list", 0)]
    monitor.stop()
    few = ScriptedRest({"run-1": [False], "run-2": [False]}, extra_runs=1000)
    monitor = make_monitor(executor, few)
    for run_id in ("run-1", "run-2"):
        monitor.monitor_run(run_id, FakeService())
    few.wait_calls(2)
    monitor.poll_once()  # learns the total: 11 pages for 2 runs, so it polls each run
    monitor.poll_once()
    assert [kind for kind, _ in few.calls[-2:]] == ["get", "get"]
    assert ("list", 100) not in few.calls
    monitor.stop()


def test_run_missing_from_the_listing_is_polled_alone(executor):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest, poll_mode="list")
    monitor.monitor_run("run-1", FakeService())
    monitor.monitor_run("not-mine", FakeService())
    monitor.poll_once()
    before = len(rest.calls)
    monitor.poll_once()
    assert rest.calls[before:] == [("list", 0), ("get", "not-mine")]
    monitor.stop()


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_missing_list_endpoint_turns_list_mode_into_per_run_polls(executor, recorder, caplog, status):
    class NoList(ScriptedRest):
        def list_training_runs(self, *args, **kwargs):
            with self._lock:
                self.calls.append(("list", 0))
            raise tr.errors.error_for_status(status, f"HTTP {status}")

    rest = NoList({"run-1": [False]})
    monitor = make_monitor(executor, rest, poll_mode="list", policy=policy(max_poll_errors=1))
    for _ in range(3):
        monitor.monitor_run("run-1", FakeService())
        monitor.poll_once()
    assert rest.calls.count(("list", 0)) == 1 and ("get", "run-1") in rest.calls
    assert monitor.watched == ["run-1"] and recorder.names() == []  # a listing error never drops a run
    assert caplog.text.count("no list endpoint") == 1
    monitor.stop()


def test_a_429_defers_the_next_poll_of_that_run(executor, recorder):
    clock = tr.ManualClock()
    limited = tr.RateLimited("slow down", status_code=429, retry_after_s=3.0)
    rest = ScriptedRest({"run-1": [limited, False]})
    monitor = make_monitor(executor, rest, clock=clock)
    watch(monitor, rest, "run-1")
    recorder.wait_for("poll_error")
    for _ in range(2):  # a whole interval, twice: still deferred
        clock.advance(1.0)
    clock.advance(0.9)
    assert len(rest.calls) == 1
    clock.advance(0.1)
    rest.wait_calls(2)
    monitor.stop()


def test_auth_errors_are_reported_once_per_run(executor, recorder):
    refused = tr.AuthenticationError("bad key", status_code=401)
    rest = ScriptedRest({"run-1": [refused]})
    monitor = make_monitor(executor, rest)
    watch(monitor, rest, "run-1")
    for _ in range(3):
        monitor.poll_once()
    payloads = recorder.wait_for("poll_error")
    assert len(payloads) == 1 and payloads[0]["reason_class"] == "auth"
    assert "polled every 60 s" in payloads[0]["reason"]
    monitor.stop()


def test_polling_thread_uses_the_interval_on_the_injected_clock(executor, recorder):
    clock = tr.ManualClock()
    rest = ScriptedRest({"run-1": [False, False, True], "restored:1": [False]})
    with make_monitor(executor, rest, clock=clock) as monitor:
        handle = monitor.monitor_run("run-1", FakeService())
        rest.wait_calls(1)  # the first poll runs at once
        clock.advance(1.0)
        rest.wait_calls(2)
        clock.advance(1.0)
        recorder.wait_for("completed")
        assert handle.wait(10)
        assert rest.calls[:3] == [("get", "run-1")] * 3  # one poll per interval, no more


def test_stop_is_idempotent_and_leaves_no_thread(executor):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest).start()
    monitor.monitor_run("run-1", FakeService())
    monitor.stop(timeout=5)
    monitor.stop(timeout=5)
    assert not [t for t in threading.enumerate() if t.name.startswith("tinker_recovery.monitor")]


def test_detect_only_sends_detected_and_hands_nothing_over(recorder):
    rest = ScriptedRest({"run-1": [True, True, False, True]})
    monitor = tr.Monitor(
        None, tr.Policy(poll_interval_ms=1000), rest=rest, detect_only=True, clock=tr.ManualClock()
    )
    handle = watch(monitor, rest, "run-1")
    for _ in range(3):  # still corrupted (not sent again), healthy, corrupted again (sent again)
        monitor.poll_once()
    assert [p["run_id"] for p in recorder.wait_for("detected", 2)] == ["run-1"] * 2
    assert monitor.watched == ["run-1"] and handle.watching and not handle.recovering
    assert recorder.names() == ["detected", "detected"]
    monitor.stop()


def test_check_answers_within_one_round_trip(executor, recorder):
    rest = ScriptedRest({"run-1": [False, False, True], "restored:1": [False]})
    monitor = make_monitor(executor, rest, policy=policy(confirm_polls=3))
    handle = watch(monitor, rest, "run-1")
    assert monitor.check("run-1") is False and recorder.names() == []
    assert monitor.check("run-1") is True  # corrupted: detection at once, no confirmation polls
    recorder.wait_for("completed")
    assert handle.wait_for_recovery(timeout=10).run_id == "run-1"
    monitor.stop()


def test_each_handle_calls_the_monitor_about_its_own_run(executor):
    # The handles share the monitor's callables (made once, issue 16): each must still act on its run.
    rest = ScriptedRest({"run-1": [False], "run-2": [False]})
    monitor = make_monitor(executor, rest, poll_mode="per_run")
    first, second = watch(monitor, rest, "run-1"), watch(monitor, rest, "run-2")
    assert first.check() is False and rest.calls[-1] == ("get", "run-1")
    assert second.check() is False and rest.calls[-1] == ("get", "run-2")
    assert second.poll_now()
    rest.wait_calls(len(rest.calls) + 1)
    assert rest.calls[-1] == ("get", "run-2")
    first.stop()
    assert not first.watching and not first.poll_now() and second.watching
    assert monitor.watched == ["run-2"]
    monitor.stop()


def test_runs_without_metadata_never_share_a_metadata_dict(executor):
    # A run given no metadata keeps no dict (issue 16); a receiver changing one run's payload
    # metadata must still not change another's.
    rest = ScriptedRest({"run-1": [False], "run-2": [False]})
    monitor = make_monitor(executor, rest)
    sent: list[dict] = []

    def on_watched(_sender, **payload):
        payload["metadata"]["seen"] = payload["run_id"]
        sent.append(payload["metadata"])

    with tr.signals.watched.connected_to(on_watched):
        watch(monitor, rest, "run-1")
        client = object()
        handle = watch(monitor, rest, "run-2", training_client=client)
    assert sent == [{"seen": "run-1"}, {"training_client": client, "seen": "run-2"}]
    assert handle.client is client and monitor.handle("run-1").client is None
    assert monitor._watches.find("run-1").metadata == {}
    monitor.stop()


def test_two_monitors_sharing_an_executor_follow_the_same_recovery(executor, recorder):
    if not hasattr(executor, "future_of"):
        pytest.skip("Executor.future_of lands with the executor's branch")
    gate = threading.Event()
    service = FakeService(gate=gate)
    rest = ScriptedRest({"run-1": [True], "restored:1": [False]})
    first, second = make_monitor(executor, rest), make_monitor(executor, rest)
    one, two = first.monitor_run("run-1", service), second.monitor_run("run-1", service)
    service.wait_active(1)
    recorder.wait_for("detected", 2)  # both have read the run corrupted while the first create is held
    gate.set()
    assert one.wait_for_recovery(10).new_run_id == two.wait_for_recovery(10).new_run_id == "restored:1"
    assert len(service.calls) == 1
    first.stop()
    second.stop()


@pytest.mark.skipif(
    not hasattr(tr.journal.Journal, "attach"), reason="Journal.attach lands with the journal branch"
)
def test_journal_is_attached_on_start_and_closed_on_stop(executor, tmp_path):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest, journal=str(tmp_path / "j.jsonl"), service=FakeService()).start()
    monitor.monitor_run("run-1", FakeService())
    monitor.stop()
    assert "run-1" in (tmp_path / "j.jsonl").read_text()


def test_a_journal_like_object_is_attached_and_closed(executor):
    calls = []

    class Journal:
        def attach(self, monitor, executor_):
            calls.append(("attach", monitor, executor_))

        def close(self):
            calls.append(("close",))

    monitor = make_monitor(executor, ScriptedRest({}), journal=Journal()).start()
    monitor.start()
    monitor.stop()
    assert calls == [("attach", monitor, executor), ("close",)]


def test_poll_now_polls_before_the_interval_is_up(executor, recorder):
    clock = tr.ManualClock()
    rest = ScriptedRest({"run-1": [False, True], "restored:1": [False]})
    with make_monitor(executor, rest, clock=clock) as monitor:
        handle = monitor.monitor_run("run-1", FakeService())
        rest.wait_calls(1)  # the first poll, at once; the next is a whole interval away
        handle.poll_now()  # e.g. the service just refused a training call
        recovery = handle.wait_for_recovery(timeout=10)
        assert recovery.run_id == "run-1" and clock.monotonic() == 1000.0  # no time had to pass
        assert not monitor.poll_now("unknown") and handle.take_recovery() is recovery


@pytest.mark.parametrize("mode", ["per_run", "list"])
def test_poll_now_during_a_poll_polls_again_right_after_it(executor, recorder, mode):
    clock = tr.ManualClock()
    entered, gate = threading.Event(), threading.Event()

    class GatedRest(ScriptedRest):
        def get_training_run(self, run_id, **kwargs):
            entered.set()
            gate.wait(10)
            return super().get_training_run(run_id, **kwargs)

        def list_training_runs(self, *args, **kwargs):
            entered.set()
            gate.wait(10)
            return super().list_training_runs(*args, **kwargs)

    rest = GatedRest({"run-1": [False, True], "restored:1": [False]})
    with make_monitor(executor, rest, clock=clock, poll_mode=mode) as monitor:
        handle = monitor.monitor_run("run-1", FakeService())
        assert entered.wait(10)
        assert handle.poll_now()  # the first poll is in flight (held at the gate): ask for another
        gate.set()
        assert handle.wait_for_recovery(timeout=10).run_id == "run-1"
        assert clock.monotonic() == 1000.0


class BriefRest(ScriptedRest):
    """Serves listings the cheap way (``list_training_runs_brief``), with ``unparsable`` items skipped
    as the RestClient skips an item that does not parse."""

    def __init__(self, scripts, unparsable=()):
        super().__init__(scripts)
        self.unparsable = set(unparsable)

    def list_training_runs_brief(self, limit=20, offset=0, *, timeout_s=None, max_retries=None):
        with self._lock:
            self.calls.append(("brief", offset))
            self._lock.notify_all()
            ids = sorted(self.scripts)
            page = [i for i in ids[offset : offset + limit] if i not in self.unparsable]
            briefs = []
            for run_id in page:
                run = self._answer(run_id)
                briefs.append(tr.models.RunBrief(run_id, run.corrupted, raw_last_checkpoint=None))
            skipped = len(ids[offset : offset + limit]) - len(page)
            return briefs, tr.Cursor(offset=offset, limit=limit, total_count=len(ids)), skipped


def test_a_listing_item_that_does_not_parse_is_skipped_and_its_run_read_alone(executor, recorder):
    # Issue 12.5: one run the listing cannot parse must not blind the monitor to the others, and a
    # watched run among those items is read with a GET of its own; a listing never counts towards a drop.
    scripts = {"bad-run": [False], "good-run": [False, True], "restored:1": [False]}
    rest = BriefRest(scripts, unparsable={"bad-run"})
    monitor = make_monitor(executor, rest, poll_mode="list")
    handle = monitor.monitor_run("good-run", FakeService())
    monitor.monitor_run("bad-run", FakeService())
    monitor.poll_once(timeout=10)
    monitor.poll_once(timeout=10)
    assert handle.wait_for_recovery(timeout=10).run_id == "good-run"
    assert ("brief", 0) in rest.calls
    listed_at = rest.calls.index(("brief", 0))
    assert ("get", "bad-run") in rest.calls[listed_at:]
    assert ("get", "good-run") in rest.calls[listed_at:]  # a corrupted brief is read in full before handover
    assert recorder.count("poll_error") == 0
    monitor.stop()
