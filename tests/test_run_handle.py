"""RunHandle: what a training loop reads, set by the monitor from other threads."""

from __future__ import annotations

import threading

import pytest
from conftest import FakeClient, checkpoint

import tinker_recovery as tr

CP = checkpoint("run-1", "step-000120")


def recovery(new_run_id="run-2"):
    return tr.Recovery("run-1", new_run_id, CP, FakeClient(new_run_id), "old", attempts=1)


def test_a_fresh_handle():
    handle = tr.RunHandle("run-1", "client")
    assert handle.client == "client" and handle.run_id == "run-1" and handle.watching
    assert not handle.recovering and handle.error is None and handle.take_recovery() is None
    assert handle.wait(0) is True and "run-1" in repr(handle)


def test_completed_recovery_is_taken_once_and_followed():
    handle = tr.RunHandle("run-1", "client")
    handle._began()
    assert handle.recovering and handle.wait(0) is False
    done = recovery()
    handle._completed(done)
    assert handle.client is done.client and handle.run_id == "run-2" and handle.original_run_id == "run-1"
    assert handle.take_recovery() is done and handle.take_recovery() is None
    assert handle.recoveries == [done] and handle.last_recovery is done and done.step == 120


def test_wait_for_recovery_blocks_until_one_arrives_and_leaves_it_to_take():
    handle = tr.RunHandle("run-1", "client")
    done = recovery()
    waiting = threading.Event()
    finisher = threading.Thread(target=lambda: (waiting.wait(10), handle._completed(done)))
    finisher.start()
    waiting.set()
    assert handle.wait_for_recovery(timeout=10) is done
    finisher.join(10)
    assert handle.take_recovery() is done


def test_wait_for_recovery_raises_the_error_or_times_out():
    handle = tr.RunHandle("run-1", "client")
    with pytest.raises(TimeoutError, match="run-1"):
        handle.wait_for_recovery(timeout=0)
    error = tr.BudgetExhausted("spent")
    handle._failed(error)
    with pytest.raises(tr.BudgetExhausted):
        handle.wait_for_recovery(timeout=0)
    assert not handle.watching and handle.error is error


def test_stop_and_poll_now_reach_the_monitor():
    calls = []
    handle = tr.RunHandle("run-1", None, stop=lambda r: calls.append(("stop", r)),
                          poll=lambda r: calls.append(("poll", r)) or True)
    assert handle.poll_now() and not tr.RunHandle("run-2", None).poll_now()
    handle.stop()
    assert calls == [("poll", "run-1"), ("stop", "run-1")]
