"""Monitor: polling, detection, poll errors, confirmation, dropping, following, handle, journal."""

from __future__ import annotations

import json
import threading

import pytest

import tinker_recovery as tr
from tinker_recovery.errors import NotFound, ServerError
from conftest import FakeService, checkpoint, training_run

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
            page = ids[offset:offset + limit]
            runs = [self._answer(i) if i in self.scripts else training_run(i, corrupted=False) for i in page]
            return runs, tr.Cursor(offset=offset, limit=limit, total_count=len(ids))


@pytest.fixture
def executor(scheduler):
    ex = tr.Executor(2, scheduler=scheduler).start()
    yield ex
    ex.shutdown(timeout=10)


def make_monitor(executor, rest, **kwargs):
    kwargs.setdefault("poll_timeout_s", 1.0)
    return tr.Monitor(executor, kwargs.pop("policy", policy()), rest=rest, **kwargs)


def test_corrupted_run_is_detected_recovered_and_followed(executor, recorder):
    rest = ScriptedRest({"run-1": [False, True], "restored:1": [False]})
    monitor = make_monitor(executor, rest)
    service = FakeService()
    handle = monitor.monitor_run("run-1", service, {"training_client": "old", "owner": "me"})
    assert monitor.poll_once() == 1 and recorder.names() == []
    monitor.poll_once()
    assert handle.wait(10)
    detected = recorder.payloads("detected")[0]
    assert detected["attempt"] == 0 and detected["checkpoint"].name == "step-000010"
    assert detected["metadata"] == {"training_client": "old", "owner": "me"}
    assert handle.client.model_id == "restored:1" and handle.run_id == "restored:1"
    recovery = handle.take_recovery()
    assert recovery.old_client == "old" and recovery.step == 10 and handle.take_recovery() is None
    assert monitor.watched == ["restored:1"]
    monitor.poll_once()
    assert rest.calls[-1] == ("get", "restored:1")
    assert recorder.payloads("completed")[0]["metadata"]["owner"] == "me"
    monitor.stop()


def test_healthy_run_stays_watched_and_sends_nothing(executor, recorder):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest)
    handle = monitor.monitor_run("run-1", FakeService())
    for _ in range(3):
        monitor.poll_once()
    assert recorder.names() == [] and monitor.watched == ["run-1"] and handle.watching
    assert rest.calls == [("get", "run-1")] * 3
    monitor.stop()


def test_poll_error_keeps_the_run_watched(executor, recorder):
    rest = ScriptedRest({"run-1": [ServerError("HTTP 500", status_code=500), False]})
    monitor = make_monitor(executor, rest)
    monitor.monitor_run("run-1", FakeService())
    monitor.poll_once()
    error = recorder.payloads("poll_error")[0]
    assert isinstance(error["error"], ServerError) and error["attempt"] == 0 and error["reason"] == "poll failed: ServerError"
    assert monitor.watched == ["run-1"]
    monitor.stop()


def test_confirm_polls_needs_consecutive_corrupted_reads(executor, recorder):
    rest = ScriptedRest({"run-1": [True, False, True, ServerError("x", status_code=503), True, False]})
    monitor = make_monitor(executor, rest, policy=policy(confirm_polls=2))
    handle = monitor.monitor_run("run-1", FakeService())
    for _ in range(4):  # corrupted, healthy (resets), corrupted, error (never counts)
        monitor.poll_once()
    assert recorder.count("detected") == 0
    monitor.poll_once()  # the second corrupted read in a row
    assert handle.wait(10) and recorder.count("detected") == 1 and recorder.count("completed") == 1
    monitor.stop()


def test_run_answering_404_is_dropped_after_max_poll_errors(executor, recorder):
    rest = ScriptedRest({})
    monitor = make_monitor(executor, rest, policy=policy(max_poll_errors=3))
    handle = monitor.monitor_run("gone", FakeService())
    for _ in range(3):
        monitor.poll_once()
    reasons = [p["reason"] for p in recorder.payloads("poll_error")]
    assert reasons[:2] == ["poll failed: NotFound"] * 2
    assert reasons[2] == "dropped from monitoring: not found for 3 consecutive polls"
    assert monitor.watched == [] and not handle.watching
    assert monitor.poll_once() == 0
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


def test_policy_falls_back_to_the_config(executor):
    config = tr.Config(api_key="tml-test", base_url="http://127.0.0.1:1", recovery={"enabled": True})
    monitor = tr.Monitor(executor, config=config)
    assert monitor.policy.enabled
    monitor.stop()


def test_stop_monitoring(executor, recorder):
    rest = ScriptedRest({"run-1": [True]})
    monitor = make_monitor(executor, rest)
    handle = monitor.monitor_run("run-1", FakeService())
    assert monitor.stop_monitoring("run-1") and not monitor.stop_monitoring("run-1")
    assert monitor.poll_once() == 0 and recorder.names() == [] and not handle.watching
    monitor.stop()


def test_exhausted_recovery_marks_the_handle(executor, recorder):
    rest = ScriptedRest({"run-1": [True]})
    monitor = make_monitor(executor, rest)
    error = tr.BadRequest("refused", status_code=400)
    handle = monitor.monitor_run("run-1", FakeService([error]))
    monitor.poll_once()
    assert handle.wait(10)
    assert handle.error is error and not handle.watching and monitor.watched == []
    monitor.stop()


def test_list_mode_reads_pages_instead_of_one_request_per_run(executor, recorder):
    scripts = {f"run-{n:03d}": [False] for n in range(250)}
    scripts["run-007"] = [True]
    rest = ScriptedRest(scripts, extra_runs=30)
    monitor = make_monitor(executor, rest, poll_mode="list", list_page_size=100)
    for run_id in scripts:
        monitor.monitor_run(run_id, FakeService())
    monitor.poll_once()
    assert rest.calls == [("list", 0), ("list", 100), ("list", 200)]
    assert [p["run_id"] for p in recorder.wait_for("completed")] == ["run-007"]
    monitor.stop()


def test_auto_mode_picks_the_cheaper_way(executor):
    few = ScriptedRest({"run-1": [False], "run-2": [False]}, extra_runs=1000)
    monitor = make_monitor(executor, few)
    for run_id in ("run-1", "run-2"):
        monitor.monitor_run(run_id, FakeService())
    monitor.poll_once()
    assert [kind for kind, _ in few.calls] == ["get", "get"]
    monitor.stop()
    many = ScriptedRest({f"run-{n:03d}": [False] for n in range(50)})
    monitor = make_monitor(executor, many)
    for run_id in many.scripts:
        monitor.monitor_run(run_id, FakeService())
    monitor.poll_once()
    assert many.calls == [("list", 0)]
    monitor.stop()


def test_run_missing_from_the_listing_is_polled_alone(executor):
    rest = ScriptedRest({"run-1": [False]})
    monitor = make_monitor(executor, rest, poll_mode="list")
    monitor.monitor_run("run-1", FakeService())
    monitor.monitor_run("not-mine", FakeService())
    monitor.poll_once()
    assert rest.calls == [("list", 0), ("get", "not-mine")]
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


def test_journal_records_and_a_restarted_monitor_resumes(executor, tmp_path, recorder):
    path = tmp_path / "recovery.jsonl"
    rest = ScriptedRest({"run-1": [True], "restored:1": [False], "run-2": [False], "run-3": [False]})
    monitor = make_monitor(executor, rest, journal=str(path)).start()
    handle = monitor.monitor_run("run-1", FakeService(), {"training_client": "secret-client"})
    monitor.monitor_run("run-2", FakeService())
    monitor.monitor_run("run-3", FakeService())
    monitor.stop_monitoring("run-3")
    recorder.wait_for("completed")
    assert handle.wait(10)
    monitor.stop()
    entries = tr.read_journal(path)
    events = [(e["event"], e["run_id"]) for e in entries]
    assert ("detected", "run-1") in events and ("unwatch", "run-3") in events
    completed = [e for e in entries if e["event"] == "completed"][0]
    assert completed["new_run_id"] == "restored:1" and completed["checkpoint"] == "tinker://run-1/weights/step-000010"
    assert "secret-client" not in path.read_text()
    assert all(json.loads(line) for line in path.read_text().splitlines())

    service = FakeService()
    again = make_monitor(executor, rest, journal=str(path), service=service).start()
    assert sorted(again.watched) == ["restored:1", "run-2"]
    assert again.handle("restored:1") is not None
    again.stop()


def test_read_journal_skips_a_torn_last_line_and_a_bad_middle_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"event":"watch","run_id":"a","attempt":0,"time":"t"}\n{"event":"wat')
    assert [e["run_id"] for e in tr.read_journal(path)] == ["a"]
    path.write_text('not json\n{"event":"watch","run_id":"a"}\n')
    assert [e["run_id"] for e in tr.read_journal(path)] == ["a"]
    assert tr.read_journal(tmp_path / "missing.jsonl") == []


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
