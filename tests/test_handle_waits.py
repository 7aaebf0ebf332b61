"""RunHandle: async waits that never block the loop, drops, check(), bounded history, memory."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc

import pytest
from conftest import FakeClient, checkpoint

import tinker_recovery as tr

CP = checkpoint("run-1", "step-000120")


def recovery(new_run_id: str = "run-2") -> tr.Recovery:
    return tr.Recovery("run-1", new_run_id, CP, FakeClient(new_run_id), "old", attempts=1)


def finisher(action, go: threading.Event) -> threading.Thread:
    def run() -> None:
        if go.wait(10):
            action()

    thread = threading.Thread(target=run, name="test-finisher", daemon=True)
    thread.start()
    return thread


def test_wait_for_recovery_async_is_woken_by_a_real_thread_while_the_loop_keeps_running():
    handle = tr.RunHandle("run-1", "client")
    done = recovery()
    go = threading.Event()
    thread = finisher(lambda: handle._completed(done), go)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 50:
                go.set()  # the thread completes the recovery only once the loop has ticked 50 times
            await asyncio.sleep(0)

    async def main() -> tr.Recovery:
        before = threading.active_count()
        task = asyncio.create_task(ticker())
        got = await handle.wait_for_recovery_async(timeout=10)
        task.cancel()
        assert threading.active_count() <= before + 1  # the finisher at most: no thread per waiter
        return got

    assert asyncio.run(main()) is done
    thread.join(10)
    assert ticks >= 50 and handle.take_recovery() is done and handle._waiters is None


def test_wait_async_returns_once_settled_or_false_on_time_out():
    handle = tr.RunHandle("run-1", "client")

    async def main() -> tuple[bool, bool, bool]:
        assert await handle.wait_async(0) is True
        handle._began()
        timed_out = await handle.wait_async(timeout=0.01)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, handle._completed, recovery())
        settled = await handle.wait_async(timeout=10)
        return timed_out, settled, handle.recovering

    assert asyncio.run(main()) == (False, True, False)


def test_a_cancelled_async_waiter_leaves_nothing_behind():
    handle = tr.RunHandle("run-1", "client")

    async def main() -> None:
        task = asyncio.create_task(handle.wait_for_recovery_async())
        await asyncio.sleep(0)
        assert handle._waiters is not None and len(handle._waiters) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert handle._waiters is None


def test_a_waiter_whose_loop_closed_does_not_break_the_monitor():
    handle = tr.RunHandle("run-1", "client")
    loop = asyncio.new_event_loop()
    future = loop.create_future()
    from tinker_recovery.handle import _AsyncWaiter

    handle._add_waiter(_AsyncWaiter(loop, future))
    loop.close()
    handle._completed(recovery())  # logs at debug, raises nothing
    assert handle.last_recovery is not None


def test_async_waits_raise_why_at_once_when_dropped_or_given_up():
    dropped = tr.RunHandle("run-1", "client")
    gone = tr.NotFound("run run-1 not found", status_code=404)

    async def main() -> None:
        waiting = asyncio.create_task(dropped.wait_for_recovery_async())
        await asyncio.sleep(0)
        dropped._dropped(gone)
        with pytest.raises(tr.NotFound):
            await waiting
        with pytest.raises(tr.NotFound):
            await dropped.wait_async()
        given_up = tr.RunHandle("run-1", "client")
        given_up._failed(tr.BudgetExhausted("spent"))
        with pytest.raises(tr.BudgetExhausted):
            await given_up.wait_for_recovery_async(timeout=None)
        assert await given_up.wait_async() is True

    asyncio.run(main())


def test_dropped_makes_blocking_waits_raise_at_once_even_without_a_time_out():
    handle = tr.RunHandle("run-1", "client")
    handle._began()
    go = threading.Event()
    gone = tr.NotFound("dropped after 5 polls answered 404", status_code=404)
    thread = finisher(lambda: handle._dropped(gone), go)
    go.set()
    with pytest.raises(tr.NotFound, match="404"):
        handle.wait_for_recovery()  # no time-out: it would hang if the drop did not wake it
    thread.join(10)
    with pytest.raises(tr.NotFound):
        handle.wait(None)
    assert (
        not handle.watching and handle.error is gone and not handle.recovering and "dropped" in repr(handle)
    )


def test_one_completion_wakes_every_blocked_thread():
    handle = tr.RunHandle("run-1", "client")
    handle._began()
    results: list[bool] = []
    lock = threading.Lock()

    def waiter() -> None:
        ok = handle.wait(10)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=waiter, name=f"test-waiter-{i}", daemon=True) for i in range(8)]
    for thread in threads:
        thread.start()
    handle._completed(recovery())
    for thread in threads:
        thread.join(10)
    assert results == [True] * 8 and handle._waiters is None


def test_check_delegates_to_the_monitor_and_a_bare_handle_refuses():
    calls: list[str] = []
    handle = tr.RunHandle("run-1", None, check=lambda run_id: calls.append(run_id) or 1)
    assert handle.check() is True and calls == ["run-1"]
    assert tr.RunHandle("run-1", None, check=lambda _r: None).check() is False
    with pytest.raises(tr.RecoveryError, match="run-1"):
        tr.RunHandle("run-1", None).check()


def test_history_keeps_the_last_hundred_and_counts_them_all():
    handle = tr.RunHandle("run-0", "client")
    made = [tr.Recovery(f"run-{i}", f"run-{i + 1}", CP, f"client-{i}", None, attempts=1) for i in range(250)]
    for done in made:
        handle._completed(done)
    assert handle.HISTORY_LIMIT == 100 and handle.recoveries == made[-100:]
    assert handle.recovery_count == 250 and handle.last_recovery is made[-1] and handle.run_id == "run-250"
    assert "recoveries=250" in repr(handle)


@pytest.mark.parametrize(
    ("timeout", "error"), [(float("nan"), ValueError), ("1", TypeError), (True, TypeError)]
)
def test_bad_time_outs_are_refused(timeout, error):
    handle = tr.RunHandle("run-1", "client")
    with pytest.raises(error, match="timeout"):
        handle.wait(timeout)
    with pytest.raises(error, match="timeout"):
        handle.wait_for_recovery(timeout)


def test_edge_time_outs_negative_does_not_block_and_inf_is_no_limit():
    handle = tr.RunHandle("run-1", "client")
    handle._began()
    assert handle.wait(-1) is False
    with pytest.raises(TimeoutError):
        handle.wait_for_recovery(-5)
    handle._completed(recovery())
    assert handle.wait(float("inf")) is True and handle.wait_for_recovery(float("inf")).new_run_id == "run-2"


def test_a_handle_is_small(capsys):
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    handles = [tr.RunHandle(f"run-{i}", None, stop=print, poll=print, check=print) for i in range(10_000)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_handle = grown / len(handles)
    with capsys.disabled():
        print(
            f"\nRunHandle: {per_handle:.0f} bytes per handle (tracemalloc, 10,000 handles, run ids included)"
        )
    assert per_handle < 400, per_handle
