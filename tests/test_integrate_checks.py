"""Issue 11.7: the Monitor and the Executor check their numbers with ``tinker_recovery._checks``;
each bad value raises an error naming the field."""

from __future__ import annotations

import math

import pytest
from conftest import FakeService, checkpoint

import tinker_recovery as tr

BAD_SECONDS = [math.nan, math.inf, -math.inf, 1e300, 10**400, -1]


def policy() -> tr.Policy:
    return tr.Policy(enabled=True, jitter="none", poll_interval_ms=100)


class NoRest:
    """REST access that is never called: the constructor refuses before any poll."""

    config = None


@pytest.mark.parametrize("value", BAD_SECONDS)
def test_monitor_poll_timeout(value: float) -> None:
    with pytest.raises(ValueError, match=r"^poll_timeout_s: "):
        tr.Monitor(None, policy(), rest=NoRest(), detect_only=True, poll_timeout_s=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, 4097, 10**30])
def test_monitor_poll_concurrency_out_of_range(value: int) -> None:
    with pytest.raises(ValueError, match=r"^poll_concurrency: "):
        tr.Monitor(None, policy(), rest=NoRest(), detect_only=True, poll_concurrency=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, math.inf, 2.0, True, "8"])
def test_monitor_poll_concurrency_not_an_int(value: object) -> None:
    with pytest.raises(TypeError, match=r"^poll_concurrency: "):
        tr.Monitor(None, policy(), rest=NoRest(), detect_only=True, poll_concurrency=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.nan, -math.inf, -1])
def test_executor_join_and_shutdown_time_outs(value: float) -> None:
    ex = tr.Executor(1)
    try:
        with pytest.raises(ValueError, match=r"^timeout: "):
            ex.join(value)
        with pytest.raises(ValueError, match=r"^timeout: "):
            ex.shutdown(timeout=value)
    finally:
        ex.shutdown(timeout=10)


def test_executor_time_out_of_the_wrong_type() -> None:
    ex = tr.Executor(1)
    try:
        with pytest.raises(TypeError, match=r"^timeout: "):
            ex.shutdown(timeout="5")  # type: ignore[arg-type]
    finally:
        ex.shutdown(timeout=10)


@pytest.mark.parametrize("value", [math.inf, 1e300, 10**400])
def test_executor_huge_time_outs_are_clamped_not_crashing(value: float) -> None:
    ex = tr.Executor(1)
    ex.start()
    assert ex.join(value) is True
    ex.shutdown(timeout=value)  # once threading.Thread.join raised OverflowError here


def test_good_values_still_work() -> None:
    monitor = tr.Monitor(None, policy(), rest=NoRest(), detect_only=True, poll_timeout_s=0.5)  # type: ignore[arg-type]
    monitor.stop(timeout=0)
    with tr.Executor(1) as ex:
        ex.start()
        future = ex.recover(
            "run-1", FakeService(), tr.Policy(enabled=True), last_checkpoint=checkpoint("run-1", "s")
        )
        assert future.result(10).new_run_id == "restored:1"
        assert ex.join(1e6) is True


def test_the_poll_pool_cap_defaults_to_64_with_a_quarter_for_hanging_runs() -> None:
    monitor = tr.Monitor(None, policy(), rest=NoRest(), detect_only=True)  # type: ignore[arg-type]
    try:
        assert monitor.settings.concurrency == 64
        assert monitor.settings.suspect_slots == 16
    finally:
        monitor.stop(timeout=0)
