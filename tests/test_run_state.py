"""RunState: what each poll outcome means for one run (pure, exact)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tinker_recovery.errors import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    ServerError,
)
from tinker_recovery.run_state import AUTH_RETRY_S, Outcome, RunState, Verdict, read_healthy


def test_a_healthy_read_is_healthy() -> None:
    assert RunState().read(False) == Outcome(Verdict.HEALTHY)


def test_corruption_needs_confirm_polls_reads_in_a_row() -> None:
    state = RunState(confirm_polls=3)
    assert state.read(True) == Outcome(Verdict.CONFIRMING, reason="corrupted 1/3")
    assert state.read(True).verdict is Verdict.CONFIRMING
    assert state.read(False).verdict is Verdict.HEALTHY  # resets
    assert state.read(True).reason == "corrupted 1/3"
    assert state.read(True).verdict is Verdict.CONFIRMING
    assert state.read(True) == Outcome(Verdict.CORRUPTED, report=True, reason="corrupted")


def test_errors_neither_count_as_corruption_nor_reset_it() -> None:
    state = RunState(confirm_polls=2)
    state.read(True)
    assert state.failed(ServerError("x", status_code=503), interval_s=1.0).verdict is Verdict.ERROR
    assert state.read(True).verdict is Verdict.CORRUPTED


def test_confirmed_reads_skip_confirmation() -> None:
    assert RunState(confirm_polls=5).read(True, confirmed=True).verdict is Verdict.CORRUPTED


def test_a_still_corrupted_run_is_reported_once_until_it_reads_healthy() -> None:
    state = RunState()
    assert state.read(True).report
    assert state.read(True) == Outcome(Verdict.CORRUPTED, report=False, reason="corrupted")
    state.read(False)
    assert state.read(True).report


def test_only_consecutive_404s_of_its_own_get_drop_a_run() -> None:
    state = RunState(max_poll_errors=3)
    gone = NotFound("gone", status_code=404)
    assert state.failed(gone, interval_s=1.0) == Outcome(
        Verdict.ERROR, report=True, reason="poll failed: NotFound"
    )
    state.failed(gone, interval_s=1.0)
    state.failed(RequestTimeout("slow"), interval_s=1.0)  # another error resets the count
    state.failed(gone, interval_s=1.0)
    state.failed(gone, interval_s=1.0)
    assert state.failed(gone, interval_s=1.0) == Outcome(
        Verdict.DROPPED, report=True, reason="dropped from monitoring: not found for 3 consecutive polls"
    )
    state2 = RunState(max_poll_errors=2)
    state2.failed(gone, interval_s=1.0)
    state2.read(False)  # a read resets it
    assert state2.failed(gone, interval_s=1.0).verdict is Verdict.ERROR


def test_auth_errors_are_reported_once_and_slow_the_polls() -> None:
    state = RunState()
    first = state.failed(AuthenticationError("bad key", status_code=401), interval_s=1.0)
    assert first.report and first.defer_s == AUTH_RETRY_S == 60.0
    assert first.reason == "poll refused: HTTP 401 (AuthenticationError); polled every 60 s"
    again = state.failed(PermissionDenied("no", status_code=403), interval_s=120.0)
    assert not again.report and again.defer_s == 120.0
    state.read(False)
    assert state.failed(AuthenticationError("bad key", status_code=401), interval_s=1.0).report


def test_retry_after_is_passed_on() -> None:
    outcome = RunState().failed(
        RateLimited("slow", status_code=429, retry_after_s=3.0), interval_s=1.0, retry_after_s=3.0
    )
    assert outcome == Outcome(Verdict.ERROR, report=True, reason="poll failed: RateLimited", defer_s=3.0)


@given(
    st.lists(st.one_of(st.booleans(), st.just("404"), st.just("500")), max_size=50),
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_dropped_only_after_max_poll_errors_404s_in_a_row(
    outcomes: list[object], confirm: int, limit: int
) -> None:
    state = RunState(confirm_polls=confirm, max_poll_errors=limit)
    streak = corrupted = 0
    for outcome in outcomes:
        if outcome == "404":
            streak += 1
            verdict = state.failed(NotFound("x", status_code=404), interval_s=1.0).verdict
            assert (verdict is Verdict.DROPPED) == (streak >= limit)
        elif outcome == "500":
            streak = 0
            assert state.failed(ServerError("x", status_code=500), interval_s=1.0).verdict is Verdict.ERROR
        else:
            streak = 0
            corrupted = corrupted + 1 if outcome else 0
            verdict = state.read(bool(outcome)).verdict
            assert (verdict is Verdict.CORRUPTED) == (bool(outcome) and corrupted >= confirm)


_STEPS = st.lists(
    st.sampled_from(["healthy", "corrupted", "confirmed", "404", "401", "500", "listing"]), max_size=12
)


@given(steps=st.lists(_STEPS, min_size=1, max_size=4), confirm=st.integers(1, 3))
def test_read_healthy_leaves_every_state_as_a_healthy_read_does(steps, confirm) -> None:
    errors = {
        "404": NotFound("gone", status_code=404),
        "401": AuthenticationError("no", status_code=401),
        "500": ServerError("x", status_code=500),
    }
    by_call = {str(n): RunState(confirm_polls=confirm, max_poll_errors=3) for n in range(len(steps))}
    by_loop = {str(n): RunState(confirm_polls=confirm, max_poll_errors=3) for n in range(len(steps))}
    for run, run_steps in enumerate(steps):
        for step in run_steps:
            for states in (by_call, by_loop):
                state = states[str(run)]
                if step == "healthy":
                    state.read(False)
                elif step in ("corrupted", "confirmed"):
                    state.read(True, confirmed=step == "confirmed")
                elif step in errors:
                    state.failed(errors[step], interval_s=1.0)
            if run_steps and run_steps[-1] == "listing":  # a listing read it healthy
                by_call[str(run)].read(False)
                read_healthy([by_loop[str(run)]])
    read_healthy(list(by_loop.values()))  # and one listing reads them all
    for state in by_call.values():
        state.read(False)
    assert by_loop == by_call
    assert all(state.read(True) == RunState(confirm_polls=confirm).read(True) for state in by_loop.values())
