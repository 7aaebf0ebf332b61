"""Poll jobs (issue 16): runs due together are read a few to a job, one worker each, and a run whose
last poll timed out is read in a job of its own, so a run that hangs never holds up another.

Real Monitor threads over a REST stand-in; no sleeps: waits are on Events with time-outs.
"""

from __future__ import annotations

import threading
from typing import Any

from conftest import checkpoint, training_run

import tinker_recovery as tr

WAIT_S = 10.0


def policy(interval_ms: int) -> tr.Policy:
    return tr.Policy(enabled=True, jitter="none", poll_interval_ms=interval_ms)


class Rest:
    """Healthy runs answered at once; ``hang`` names a run whose first poll times out and whose
    later polls block until ``release`` is set. ``reads[run_id]`` counts answered polls."""

    def __init__(self, run_ids: list[str], hang: str | None = None) -> None:
        self.reads = dict.fromkeys(run_ids, 0)
        self.hang = hang
        self.hanging = threading.Event()  # a later poll of ``hang`` is blocked now
        self.release = threading.Event()
        self.changed = threading.Condition()
        self.threads: set[str] = set()

    def get_training_run(self, run_id: str, **_: Any) -> tr.TrainingRun:
        with self.changed:
            self.threads.add(threading.current_thread().name)
        if run_id == self.hang:
            with self.changed:
                first = self.reads[run_id] == 0
                self.reads[run_id] += 1
            if first:
                raise tr.RequestTimeout(f"GET {run_id}: no answer within 0.1 s")
            self.hanging.set()
            self.release.wait(WAIT_S)
            raise tr.RequestTimeout(f"GET {run_id}: no answer within 0.1 s")
        with self.changed:
            self.reads[run_id] += 1
            self.changed.notify_all()
        return training_run(run_id, checkpoint(run_id, "step-000010"), corrupted=False)

    def wait_reads(self, run_id: str, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.reads[run_id] >= count, WAIT_S)


def test_a_run_whose_poll_timed_out_is_read_alone_and_holds_up_no_other() -> None:
    rest = Rest(["a", "b", "c"], hang="a")  # "a" first: in a shared job it would block b and c
    monitor = tr.Monitor(None, policy(100), rest=rest, detect_only=True, poll_mode="per_run")  # type: ignore[arg-type]
    try:
        for run_id in ("a", "b", "c"):
            monitor.monitor_run(run_id, None)
        assert rest.hanging.wait(WAIT_S)  # a's second poll hangs in its own job
        with rest.changed:
            b_then, c_then = rest.reads["b"], rest.reads["c"]
        # while a hangs, b and c are read again and again (every 100 ms)
        assert rest.wait_reads("b", b_then + 3) and rest.wait_reads("c", c_then + 3)
        assert not rest.release.is_set()
    finally:
        rest.release.set()
        monitor.stop(timeout=5)


def test_runs_answered_at_once_are_read_by_one_worker() -> None:
    # On a ManualClock no time passes during a read: every round trip measures 0 s.
    run_ids = [f"run-{n}" for n in range(100)]
    rest = Rest(run_ids)
    monitor = tr.Monitor(
        None, policy(1000), rest=rest, detect_only=True, poll_mode="per_run", clock=tr.ManualClock()  # type: ignore[arg-type]
    )
    try:
        for run_id in run_ids:
            monitor.monitor_run(run_id, None)
        assert monitor.poll_once(timeout=WAIT_S) == 100
        first = set(rest.threads)
        rest.threads.clear()
        assert monitor.poll_once(timeout=WAIT_S) == 100
        # the first round guessed a 10 ms round trip: 4 jobs of 25 runs (a quarter of the interval
        # each); from then on the measured one puts every run in one job, read by one worker
        assert 1 <= len(first) <= 4 and len(rest.threads) == 1
        assert all(count == 2 for count in rest.reads.values())
        pool = [t for t in threading.enumerate() if t.name.startswith(monitor._poller._name + ".poll")]
        assert len(pool) == 4
    finally:
        monitor.stop(timeout=5)


class OddRest(Rest):
    """``bad`` answers None (not a run): that poll fails; the runs after it in its job are read."""

    def get_training_run(self, run_id: str, **kwargs: Any) -> tr.TrainingRun:
        if run_id == "bad":
            with self.changed:
                self.reads[run_id] += 1
                self.changed.notify_all()
            return None  # type: ignore[return-value]
        return super().get_training_run(run_id, **kwargs)


def test_an_odd_answer_fails_its_poll_and_the_rest_of_its_job_is_read() -> None:
    rest = OddRest(["bad", "good1", "good2"])
    errors: list[str] = []

    def on_poll_error(_sender: object, run_id: str, **_: object) -> None:
        errors.append(run_id)

    tr.signals.poll_error.connect(on_poll_error)
    monitor = tr.Monitor(
        None, policy(1000), rest=rest, detect_only=True, poll_mode="per_run", clock=tr.ManualClock()  # type: ignore[arg-type]
    )
    try:
        for run_id in ("bad", "good1", "good2"):  # one job: "bad" first
            monitor.monitor_run(run_id, None)
        assert monitor.poll_once(timeout=WAIT_S) == 3
        assert monitor.poll_once(timeout=WAIT_S) == 3
        assert rest.reads == {"bad": 2, "good1": 2, "good2": 2}
        monitor.stop(timeout=5)
        assert errors and set(errors) == {"bad"}
    finally:
        tr.signals.poll_error.disconnect(on_poll_error)
        monitor.stop(timeout=5)


class CountingClient(tr.RestClient):
    """A RestClient subclass that changes what a run reads (as examples/live_injected.py does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.full_reads = 0

    def get_training_run(self, run_id: str, **kwargs: Any) -> tr.TrainingRun:
        self.full_reads += 1
        return super().get_training_run(run_id, **kwargs)


def test_polls_use_the_brief_reader_unless_the_full_one_is_overridden() -> None:
    from tinker_recovery._poller import cheap_reader

    config = tr.Config(api_key="tml-" + "k" * 40, base_url="http://127.0.0.1:9")
    plain, counting = tr.RestClient(config), CountingClient(config)
    assert cheap_reader(plain, "get_training_run_brief", "get_training_run") == "get_training_run_brief"
    assert cheap_reader(counting, "get_training_run_brief", "get_training_run") == "get_training_run"
    assert cheap_reader(plain, "list_training_runs_brief", "list_training_runs") == "list_training_runs_brief"
    plain.get_training_run = lambda *a, **k: None  # type: ignore[method-assign]  # patched on the instance
    assert cheap_reader(plain, "get_training_run_brief", "get_training_run") == "get_training_run"

    class Briefer(CountingClient):  # overrides both: its own brief reader is used
        def get_training_run_brief(self, run_id: str, **kwargs: Any) -> Any:
            return super().get_training_run_brief(run_id, **kwargs)

    briefer = Briefer(config)
    assert cheap_reader(briefer, "get_training_run_brief", "get_training_run") == "get_training_run_brief"
    assert cheap_reader(Rest([]), "get_training_run_brief", "get_training_run") == "get_training_run"


def test_pages_are_read_by_health_unless_a_fuller_reader_is_overridden() -> None:
    from tinker_recovery._poller import _page_by_briefs, _page_by_health, _page_by_runs, page_reader

    config = tr.Config(api_key="tml-" + "k" * 40, base_url="http://127.0.0.1:9")

    class Lister(tr.RestClient):  # e.g. injects a corruption into the listing
        def list_training_runs(self, *args: Any, **kwargs: Any) -> Any:
            return super().list_training_runs(*args, **kwargs)

    class BriefLister(tr.RestClient):
        def list_training_runs_brief(self, *args: Any, **kwargs: Any) -> Any:
            return super().list_training_runs_brief(*args, **kwargs)

    class HealthLister(BriefLister):  # overrides the cheapest too: its own is used
        def list_training_runs_health(self, *args: Any, **kwargs: Any) -> Any:
            return super().list_training_runs_health(*args, **kwargs)

    assert page_reader(tr.RestClient(config)) is _page_by_health
    assert page_reader(Lister(config)) is _page_by_runs
    assert page_reader(BriefLister(config)) is _page_by_briefs
    assert page_reader(HealthLister(config)) is _page_by_health
    patched = tr.RestClient(config)
    patched.list_training_runs_brief = lambda *a, **k: None  # type: ignore[method-assign]
    assert page_reader(patched) is _page_by_briefs
    assert page_reader(Rest([])) is _page_by_runs  # a stand-in with the full reader only
