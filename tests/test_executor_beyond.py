"""Executor beyond the original: classification, fallback, best, budget, attempt time-out."""

from __future__ import annotations

import threading

import pytest
from conftest import FakeService, StubRest, checkpoint, training_run

import tinker_recovery as tr
from tinker_recovery.classify import classify, is_unloadable
from tinker_recovery.errors import NotFound, ServerError

RUN = "run-1"
OLDEST = checkpoint(RUN, "step-000010", minutes=10)
MIDDLE = checkpoint(RUN, "step-000020", minutes=20)
NEWEST = checkpoint(RUN, "step-000030", minutes=30)
SAMPLER = checkpoint(RUN, "sampler-000025", minutes=25, kind="sampler")


def policy(**overrides):
    return tr.Policy(**{"enabled": True, "jitter": "none", **overrides})


def not_found(path):
    return NotFound(f"{path} not found", status_code=404)


class SdkStatusError(Exception):
    """Shaped like the official SDK's APIStatusError."""

    def __init__(self, status_code):
        super().__init__(f"status {status_code}")
        self.status_code = status_code


class APIConnectionError(Exception):
    """Named like the official SDK's connection error."""


class RequestFailedError(Exception):
    def __init__(self, category):
        super().__init__("request failed")
        self.category = category


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (SdkStatusError(400), False),
        (SdkStatusError(401), False),
        (SdkStatusError(403), False),
        (SdkStatusError(404), False),
        (SdkStatusError(422), False),
        (SdkStatusError(408), True),
        (SdkStatusError(409), True),
        (SdkStatusError(429), True),
        (SdkStatusError(500), True),
        (SdkStatusError(503), True),
        (APIConnectionError(), True),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (tr.MissingCheckpoint("none"), False),
        (tr.CheckpointStrategyNotSupported("no"), False),
        (tr.InvalidCheckpointPath("bad"), False),
        (tr.AttemptTimeout("slow"), True),
        (RequestFailedError("user"), False),
        (RequestFailedError("server"), True),
        (ValueError("unknown"), True),
    ],
)
def test_classification(error, retryable):
    verdict = classify(error)
    assert verdict.retryable is retryable
    assert verdict.reason.startswith("transient" if retryable else "fatal")


def test_retry_on_that_raises_falls_back_to_the_builtin_rules(caplog):
    def broken(error):
        raise RuntimeError("bug")

    assert classify(SdkStatusError(400), broken).retryable is False
    assert "retry_on raised" in caplog.text


def test_unloadable_errors():
    assert is_unloadable(not_found("x")) and is_unloadable(SdkStatusError(404))
    assert is_unloadable(RequestFailedError("user"))
    assert not is_unloadable(ServerError("x", status_code=503)) and not is_unloadable(ValueError())


def test_deleted_newest_falls_back_to_the_previous_one(scheduler, recorder):
    rest = StubRest(
        runs={RUN: training_run(RUN, NEWEST)}, checkpoints={RUN: [OLDEST, SAMPLER, NEWEST, MIDDLE]}
    )
    service = FakeService([not_found(NEWEST.tinker_path)])
    with tr.Executor(1, rest=rest, scheduler=scheduler) as ex:
        recovery = ex.recover(RUN, service, policy(), run=training_run(RUN, NEWEST)).result(10)
    assert recovery.checkpoint == MIDDLE
    assert [path for _, path in service.calls] == [NEWEST.tinker_path, MIDDLE.tinker_path]
    assert [p["checkpoint"] for p in recorder.payloads("checkpoint_selected")] == [NEWEST, MIDDLE]
    assert recorder.count("failed") == 0 and scheduler.delays == []


def test_fallback_skips_sampler_and_expired_and_stops_at_max_fallbacks(scheduler, recorder):
    clock = tr.ManualClock(wall_start=OLDEST.time)
    expired = checkpoint(RUN, "step-000025", minutes=25, expires_in_min=1)
    rest = StubRest(checkpoints={RUN: [OLDEST, MIDDLE, expired, SAMPLER, NEWEST]})
    service = FakeService([not_found("a"), not_found("b"), not_found("c")])
    with tr.Executor(1, rest=rest, scheduler=scheduler, clock=clock) as ex:
        future = ex.recover(RUN, service, policy(max_fallbacks=1), last_checkpoint=NEWEST)
        with pytest.raises(NotFound):
            future.result(10)
    assert [path for _, path in service.calls] == [NEWEST.tinker_path, MIDDLE.tinker_path]
    assert recorder.payloads("exhausted")[0]["reason"] == "fatal: HTTP 404 from the service"


def test_expired_latest_is_skipped_without_a_load(scheduler):
    clock = tr.ManualClock(wall_start=OLDEST.time)
    clock.advance(3600)
    expired_newest = checkpoint(RUN, "step-000030", minutes=30, expires_in_min=40)
    rest = StubRest(checkpoints={RUN: [MIDDLE, expired_newest]})
    service = FakeService()
    with tr.Executor(1, rest=rest, scheduler=scheduler, clock=clock) as ex:
        recovery = ex.recover(RUN, service, policy(), last_checkpoint=expired_newest).result(10)
    assert recovery.checkpoint == MIDDLE and service.calls == [("with_optimizer", MIDDLE.tinker_path)]


def test_each_retry_refetches_the_run(scheduler):
    newer = checkpoint(RUN, "step-000040", minutes=40)
    rest = StubRest(runs={RUN: training_run(RUN, newer)})
    service = FakeService([ServerError("x", status_code=503)])
    with tr.Executor(1, rest=rest, scheduler=scheduler) as ex:
        future = ex.recover(RUN, service, policy(), run=training_run(RUN, NEWEST))
        scheduler.wait_scheduled(1)
        scheduler.fire()
        recovery = future.result(10)
    assert [path for _, path in service.calls] == [NEWEST.tinker_path, newer.tinker_path]
    assert rest.calls == [("get_training_run", RUN)] and recovery.checkpoint == newer


def test_best_picks_the_highest_score_and_falls_back_to_the_next(scheduler):
    scores = {"step-000010": 0.9, "step-000020": 0.5, "step-000030": 0.7}
    rest = StubRest(checkpoints={RUN: [OLDEST, MIDDLE, NEWEST, SAMPLER]})
    service = FakeService([not_found("x")])
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: scores[cp.name])
    with tr.Executor(1, rest=rest, scheduler=scheduler) as ex:
        recovery = ex.recover(RUN, service, pol).result(10)
    assert [path for _, path in service.calls] == [OLDEST.tinker_path, NEWEST.tinker_path]
    assert recovery.checkpoint == NEWEST


def test_best_scorer_that_raises_is_fatal(scheduler):
    rest = StubRest(checkpoints={RUN: [OLDEST]})
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: 1 / 0)
    with (
        tr.Executor(1, rest=rest, scheduler=scheduler) as ex,
        pytest.raises(tr.CheckpointStrategyNotSupported, match="ZeroDivisionError"),
    ):
        ex.recover(RUN, FakeService(), pol).result(10)
    assert scheduler.delays == []


def test_best_without_rest_is_missing_checkpoint(scheduler):
    pol = policy(checkpoint_strategy="best", best_by=lambda cp: 1.0)
    with tr.Executor(1, scheduler=scheduler) as ex, pytest.raises(tr.MissingCheckpoint, match="REST"):
        ex.recover(RUN, FakeService(), pol).result(10)


def test_sampler_checkpoint_given_is_fatal(scheduler):
    with tr.Executor(1, scheduler=scheduler) as ex, pytest.raises(tr.InvalidCheckpointPath):
        ex.recover(RUN, FakeService(), policy(), last_checkpoint=SAMPLER).result(10)
    assert scheduler.delays == []


def test_lineage_budget_is_spent_after_max_recoveries(scheduler, recorder):
    clock = tr.ManualClock()
    service = FakeService()
    pol = policy(max_recoveries=2, recovery_window_s=60)
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        first = ex.recover(RUN, service, pol, last_checkpoint=NEWEST).result(10)
        second = ex.recover(first.new_run_id, service, pol, last_checkpoint=NEWEST).result(10)
        with pytest.raises(tr.BudgetExhausted, match="2 of 2 restarts within 60 s"):
            ex.recover(second.new_run_id, service, pol, last_checkpoint=NEWEST).result(10)
        assert ex.recover("unrelated", service, pol, last_checkpoint=NEWEST).result(
            10
        )  # other lineages go on
        clock.advance(61)  # the window slides: the lineage may restart again
        ex.recover(second.new_run_id, service, pol, last_checkpoint=NEWEST).result(10)
    exhausted = recorder.payloads("exhausted")
    assert len(exhausted) == 1 and "restart budget spent" in exhausted[0]["reason"]
    assert recorder.count("started") == 4  # the refused one never started


def test_attempt_timeout_frees_the_slot(scheduler, recorder):
    clock = tr.ManualClock()
    gate = threading.Event()
    hung = FakeService(gate=gate)
    with tr.Executor(1, scheduler=scheduler, clock=clock) as ex:
        future = ex.recover(
            RUN, hung, policy(attempt_timeout_ms=2_000, max_attempts=1), last_checkpoint=NEWEST
        )
        hung.wait_active(1)
        clock.wait_for_waiters(1)
        clock.advance(2.0)
        with pytest.raises(tr.AttemptTimeout):
            future.result(10)
        # the single worker is free again although the first call still hangs
        ok = ex.recover("run-2", FakeService(), policy(), last_checkpoint=NEWEST).result(10)
        assert ok.run_id == "run-2"
        gate.set()
    assert recorder.payloads("failed")[0]["reason"] == "transient: AttemptTimeout"
