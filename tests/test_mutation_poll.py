"""PollSchedule, PollSettings and RunState edges the exact-number tests did not pin down: both
sides of each time boundary, slot counting, a listing that fails or runs out of time, the query
methods (written to kill the mutants mutmut made of poll_schedule.py, poll_settings.py and
run_state.py; see docs/mutation.md). Times are binary fractions, so every sum is exact."""

from __future__ import annotations

import math

import pytest

from tinker_recovery.errors import ApiError, AuthenticationError
from tinker_recovery.poll_schedule import Plan, PollSchedule, poll_jobs
from tinker_recovery.poll_settings import PollSettings
from tinker_recovery.run_state import RunState, Verdict


def schedule(**overrides: object) -> PollSchedule:
    fields = {"interval_s": 1.0, "timeout_s": 1.0, "concurrency": 16, "mode": "per_run", "page_size": 100}
    fields.update(overrides)
    fields.setdefault("pages_per_job", 1)  # page by page (jobs: test_poll_schedule_jobs.py)
    return PollSchedule(PollSettings(**fields))  # type: ignore[arg-type]


def listed_all(s: PollSchedule, runs: list[str], now: float) -> None:
    """Watch ``runs``, then start a listing at ``now`` and read it whole, one run per page."""
    for run_id in runs:
        s.add(run_id, now)
    assert s.plan(now).pages == (0,)
    s.page_read(0, len(runs), runs[:1], now)
    for offset, run_id in enumerate(runs[1:], start=1):
        assert s.plan(now).pages == (offset,)
        s.page_read(offset, len(runs), [run_id], now)
    assert not s.listing


# --- poll_jobs ------------------------------------------------------------------------------------


def test_poll_jobs_edges():
    assert poll_jobs(100, 1.0, 0.0025) == 1  # exactly a quarter of the interval: one job
    assert poll_jobs(100, 1.0, 0.00251) == 2
    assert poll_jobs(100, 2.0, 0.05) == 10  # 100 * 0.05 / (0.25 * 2)
    assert poll_jobs(1, 1.0, 0.0) == 1


# --- per run: slots, queries ----------------------------------------------------------------------


def test_a_finished_suspect_frees_its_slot_for_the_next():
    s = schedule(concurrency=4)  # 1 suspect slot
    for run_id in "ab":
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.finished("a", 0.5, timed_out=True)
    s.finished("b", 0.5, timed_out=True)
    assert s.plan(1.0) == Plan(alone=("a",), waiting=("b",))
    s.finished("a", 1.25, timed_out=True)
    assert s.plan(1.25) == Plan(alone=("b",))


def test_removing_a_suspect_that_finished_frees_nothing_twice():
    s = schedule(concurrency=4)  # 1 suspect slot
    for run_id in "abc":
        s.add(run_id, 0.0)
    s.plan(0.0)
    for run_id in "abc":
        s.finished(run_id, 0.5, timed_out=True)
    assert s.plan(1.0) == Plan(alone=("a",), waiting=("b", "c"))
    s.finished("a", 1.25, timed_out=True)
    s.remove("a")  # it holds no slot any more
    assert s.plan(1.25) == Plan(alone=("b",), waiting=("c",))


def test_removing_one_of_two_suspects_in_flight_frees_one_slot():
    s = schedule(concurrency=8)  # 2 suspect slots
    for run_id in "abcd":
        s.add(run_id, 0.0)
    s.plan(0.0)
    for run_id in "abcd":
        s.finished(run_id, 0.5, timed_out=True)
    assert s.plan(1.0) == Plan(alone=("a", "b"), waiting=("c", "d"))
    s.remove("a")
    assert s.plan(1.0) == Plan(alone=("c",), waiting=("d",))


def test_a_suspect_not_waiting_counts_for_the_next_wake():
    s = schedule()
    s.add("a", 0.0)
    s.plan(0.0)
    s.finished("a", 0.5, timed_out=True)
    assert s.next_wake(0.5) == 1.0


def test_busy_listed_and_due_now():
    s = schedule(mode="list", page_size=1, interval_s=10.0, timeout_s=10.0)
    assert s.busy("nope") is False and s.listed("nope") is False and s.due_now() == []
    for run_id in "ab":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    assert s.listed("a") is True and s.busy("a") is False
    assert s.due_now() == ["a", "b"]
    s.page_read(0, 1, ["a"], 0.25)  # b is in no page: polled alone
    assert s.listed("a") is False and s.listed("b") is False
    assert s.plan(0.25) == Plan(alone=("b",))
    assert s.busy("b") is True and s.due_now() == ["a"]
    s.finished("b", 0.5)
    assert s.busy("b") is False and s.due_now() == ["a", "b"]


# --- list mode ------------------------------------------------------------------------------------


def test_a_listing_out_of_time_with_nothing_in_flight_ends_at_the_next_plan():
    s = schedule(mode="list", page_size=1, page_concurrency=1, interval_s=10.0, timeout_s=1.0)
    for run_id in "abc":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    assert s.page_read(0, 3, ["a"], 0.5) == (["a"], [])
    s.plan(0.5)  # page 1
    assert s.page_read(1, 3, ["b"], 0.75) == (["b"], [])  # still within the budget
    assert s.plan(1.0) == Plan(alone=("c",), unread=("c",))  # the budget ends at 1.0 exactly
    assert not s.listing and s.listed("c") is False


def test_a_page_answered_exactly_at_the_budget_ends_the_listing():
    s = schedule(mode="list", page_size=1, interval_s=10.0, timeout_s=1.0)
    for run_id in "abc":
        s.add(run_id, 0.0)
    s.plan(0.0)
    assert s.page_read(0, 3, ["a"], 1.0) == (["a"], ["b", "c"])
    assert s.listed("b") is False and s.listed("c") is False


def test_no_page_starts_after_the_budget_and_the_wake_waits_for_the_page_in_flight():
    s = schedule(mode="list", page_size=1, page_concurrency=2, interval_s=10.0, timeout_s=1.0)
    for run_id in "abcd":
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.page_read(0, 4, ["a"], 0.5)
    assert s.plan(0.5) == Plan(pages=(1, 2))
    assert s.next_wake(0.5) == 10.0  # two pages in flight, as many as page_concurrency
    assert s.page_read(1, 4, ["b"], 0.75) == (["b"], [])
    assert s.next_wake(0.75) == 0.75  # a slot for page 3
    assert s.plan(1.0) == Plan()  # out of time: page 3 is never started
    assert s.next_wake(1.0) == 10.0  # no spinning while page 2 is answered


def test_once_every_page_started_the_wake_is_the_runs_deadline():
    s = schedule(mode="list", page_size=1, page_concurrency=4, interval_s=10.0, timeout_s=10.0)
    for run_id in "abc":
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.page_read(0, 3, ["a"], 0.25)
    assert s.plan(0.25) == Plan(pages=(1, 2))
    assert s.next_wake(0.25) == 10.0


def test_the_first_page_is_asked_for_once():
    s = schedule(mode="list", page_size=1)
    for run_id in "ab":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    assert s.plan(0.25) == Plan()


def test_a_failed_page_stops_the_listing_while_another_is_in_flight():
    s = schedule(mode="list", page_size=1, page_concurrency=2, interval_s=10.0, timeout_s=10.0)
    runs = [f"r{n}" for n in range(10)]
    for run_id in runs:
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.page_read(0, 10, ["r0"], 0.125)
    assert s.plan(0.125) == Plan(pages=(1, 2))
    assert s.page_failed(0.25, defer_s=5.0) == []  # page 2 still in flight
    assert s.listing
    assert s.plan(0.25) == Plan()  # no more pages; the unread wait out the Retry-After
    assert s.next_wake(0.25) == 5.25


def test_a_listing_does_not_cover_runs_in_a_poll_of_their_own():
    s = schedule(mode="list", page_size=1, interval_s=0.625, timeout_s=0.625)
    s.add("a", 0.0)
    s.add("b", 0.0)
    s.plan(0.0)
    s.page_read(0, 1, ["a"], 0.125)  # b is in no page: polled alone
    assert s.plan(0.125) == Plan(alone=("b",))
    assert s.plan(0.625) == Plan(pages=(0,))  # the next listing, b still in its own poll
    assert s.listed("a") is True and s.listed("b") is False


def test_nothing_to_read_starts_no_listing():
    s = schedule(mode="list", page_size=1, interval_s=0.625, timeout_s=0.625)
    s.add("a", 0.0)
    s.plan(0.0)
    assert s.page_read(0, 1, [], 0.125) == ([], ["a"])
    assert s.plan(0.125) == Plan(alone=("a",))
    assert s.plan(0.625) == Plan()  # a still in its own poll: a listing would read nothing


def test_the_next_listing_is_due_at_exactly_horizon():
    # interval 0.625 s: slack 0.03125 s; 3 pages for 2 runs, so listing early does not apply
    s = schedule(mode="list", page_size=1, interval_s=0.625, timeout_s=0.625)
    for run_id in "ab":
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.page_read(0, 3, ["a"], 0.0)
    s.plan(0.0)
    s.page_read(1, 3, ["b"], 0.0)
    s.page_read(2, 3, [], 0.0)
    assert not s.listing and s.known_total == 3
    assert s.plan(0.5625) == Plan()  # horizon 0.59375: not yet
    assert s.plan(0.59375) == Plan(pages=(0,))  # horizon 0.625: the next listing, exactly


def test_one_new_run_is_polled_alone_when_the_listing_needs_more_pages():
    s = schedule(mode="list", page_size=1, interval_s=10.0, timeout_s=10.0)
    listed_all(s, ["a", "b"], 0.0)
    s.add("c", 0.25)
    assert s.plan(0.25) == Plan(alone=("c",))  # 1 new run, 2 pages: alone is cheaper


def test_listing_early_counts_pages_from_the_known_total():
    s = schedule(mode="list", page_size=1, interval_s=10.0, timeout_s=10.0)
    s.add("a", 0.0)
    s.add("b", 0.0)
    s.plan(0.0)
    s.page_read(0, 1, ["a"], 0.0)  # the account shows 1 run; b is another owner's
    assert s.plan(0.0) == Plan(alone=("b",))
    s.add("c", 0.25)
    assert s.plan(0.25) == Plan(pages=(0,))  # 1 new run, 1 page for the known total: list now


def test_a_run_due_at_exactly_horizon_counts_as_new_for_listing_early():
    s = schedule(mode="list", page_size=1, interval_s=0.625, timeout_s=0.625)
    s.add("x", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s.page_read(0, 3, [], 0.0)
    assert s.plan(0.0) == Plan(pages=(1, 2))
    s.page_read(1, 3, ["x"], 0.0)
    assert s.page_failed(0.0, defer_s=1.0) == []  # a Retry-After: the next listing at 1.0
    s.remove("x")  # (else x, read at 0.0, is due at 0.625 and counts as new too)
    s.add("z", 0.0625)
    assert s.plan(0.0625) == Plan(alone=("z",))  # 1 new run, 3 pages: alone; due again at 0.6875
    s.finished("z", 0.125)
    s.add("d", 0.65625)
    s.add("e", 0.65625)
    # at 0.65625 the horizon is 0.6875: z is due with d and e; 3 runs, 3 pages: list early
    assert s.plan(0.65625) == Plan(pages=(0,))


def test_auto_learns_the_total_as_soon_as_every_run_was_looked_at():
    s = schedule(mode="auto", page_size=1, interval_s=10.0, timeout_s=10.0)
    for run_id in "ab":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(alone=("a", "b"))
    s.finished("a", 0.25)
    s.finished("b", 0.25)
    assert s.plan(0.25) == Plan(pages=(0,))  # not at 10.0, when the runs are due again


def test_list_mode_with_every_run_in_its_own_poll_waits_for_the_answers():
    s = schedule(mode="list", page_size=1, interval_s=0.625, timeout_s=0.625)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 1, [], 0.125)
    assert s.plan(0.125) == Plan(alone=("a",))
    assert s.next_wake(0.75) == math.inf  # the next listing (0.625) would read nothing


def test_a_run_read_by_the_listing_after_poll_now_is_due_at_once():
    s = schedule(mode="list", page_size=1, interval_s=10.0, timeout_s=10.0)
    s.add("a", 0.0)
    s.plan(0.0)
    assert s.poll_now("a", 0.125)  # covered by the listing in flight: due when it is read
    assert s.page_read(0, 1, ["a"], 0.25) == (["a"], [])
    assert s.next_wake(0.25) == 0.25
    assert s.plan(0.25) == Plan(pages=(0,))  # due at once; one page is cheapest: listed again


def test_an_empty_account_has_a_known_total_of_zero():
    s = schedule(mode="list")
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 0, [], 0.25)
    assert s.known_total == 0


def test_auto_stops_a_listing_that_costs_as_much_as_polling_each_run():
    s = schedule(mode="auto", page_size=1, interval_s=10.0, timeout_s=10.0)
    for run_id in "ab":
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.finished("a", 0.0)
    s.finished("b", 0.0)  # both looked at once: auto learns the total by listing
    assert s.plan(10.0) == Plan(pages=(0,))
    assert s.page_read(0, 2, ["a"], 10.0) == (["a"], ["b"])  # 2 pages for 2 runs: not worth it


# --- settings -------------------------------------------------------------------------------------


def test_each_field_is_checked_by_the_shared_checks_and_named():
    # The one home of value checks is _checks; PollSettings only names its fields.
    assert PollSettings(interval_s=1e9, timeout_s=0.001).interval_s == 1e9
    cases = [
        ({"interval_s": 0}, ValueError, "interval_s: must be at least 0.001 s, got 0"),
        ({"interval_s": 1e9 + 1}, ValueError, "interval_s: must be at most 1e+09 s, got 1000000001.0"),
        ({"timeout_s": math.nan}, ValueError, "timeout_s: must be a number of seconds, got NaN"),
        ({"timeout_s": "1"}, TypeError, "timeout_s: expected a number of seconds, got str '1'"),
        ({"concurrency": 4097}, ValueError, "concurrency: must be at most 4096, got 4097"),
        ({"concurrency": 0}, ValueError, "concurrency: must be at least 1, got 0"),
        ({"page_size": 10_001}, ValueError, "page_size: must be at most 10000, got 10001"),
        ({"max_pages": 100_001}, ValueError, "max_pages: must be at most 100000, got 100001"),
        ({"page_concurrency": 65}, ValueError, "page_concurrency: must be at most 64, got 65"),
        ({"page_concurrency": True}, TypeError, "page_concurrency: expected int, got bool True"),
    ]
    for change, kind, message in cases:
        fields = {"interval_s": 1.0, "timeout_s": 1.0, **change}
        with pytest.raises(kind) as info:
            PollSettings(**fields)
        assert str(info.value) == message


def test_for_monitor_names_the_monitors_arguments():
    def build(**change):
        args = {
            "poll_timeout_s": None,
            "rest_timeout_s": 30.0,
            "poll_concurrency": 64,
            "poll_mode": "auto",
            "list_page_size": 100,
            **change,
        }
        return PollSettings.for_monitor(change.pop("interval_s", 1.0), **args)

    settings = build()
    assert (settings.interval_s, settings.timeout_s, settings.concurrency, settings.page_size) == (
        1.0,
        1.0,
        64,
        100,
    )
    assert build(poll_timeout_s=2).timeout_s == 2.0 and isinstance(build(poll_timeout_s=2).timeout_s, float)
    assert build(rest_timeout_s=0.5).timeout_s == 0.5
    # the edges are accepted, each into its own field
    edge = build(poll_timeout_s=0.001, poll_concurrency=1, list_page_size=1, poll_mode="list")
    assert (edge.timeout_s, edge.concurrency, edge.page_size, edge.mode) == (0.001, 1, 1, "list")
    top = build(poll_concurrency=4096, list_page_size=10_000, poll_mode="per_run")
    assert (top.concurrency, top.page_size, top.mode) == (4096, 10_000, "per_run")
    assert PollSettings.for_monitor(
        0.001,
        poll_timeout_s=None,
        rest_timeout_s=30.0,
        poll_concurrency=2,
        poll_mode="auto",
        list_page_size=3,
    ) == PollSettings(interval_s=0.001, timeout_s=1.0, concurrency=2, mode="auto", page_size=3)
    cases = [
        ({"poll_timeout_s": 0}, "poll_timeout_s: must be at least 0.001 s, got 0"),
        ({"poll_timeout_s": 0.0009}, "poll_timeout_s: must be at least 0.001 s, got 0.0009"),
        ({"poll_timeout_s": math.inf}, "poll_timeout_s: must be at most 1e+09 s, got inf"),
        ({"poll_concurrency": 0}, "poll_concurrency: must be at least 1, got 0"),
        ({"poll_concurrency": 4097}, "poll_concurrency: must be at most 4096, got 4097"),
        ({"list_page_size": 10_001}, "list_page_size: must be at most 10000, got 10001"),
        ({"poll_mode": "often"}, "poll_mode: expected one of auto, per_run, list, got 'often'"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError) as info:
            build(**change)
        assert str(info.value) == message
    with pytest.raises(ValueError) as info:
        PollSettings.for_monitor(
            math.nan,
            poll_timeout_s=1.0,
            rest_timeout_s=1.0,
            poll_concurrency=1,
            poll_mode="auto",
            list_page_size=1,
        )
    assert str(info.value) == "poll_interval_ms: must be a number of seconds, got NaN"


def test_mode_message():
    with pytest.raises(ValueError) as info:
        PollSettings(interval_s=1.0, timeout_s=1.0, mode="sometimes")
    assert str(info.value) == "poll_mode: expected one of auto, per_run, list, got 'sometimes'"


# --- run state ------------------------------------------------------------------------------------


def test_a_read_resets_the_flags_to_false():
    state = RunState()
    state.failed(AuthenticationError("no", status_code=401), interval_s=1.0)
    state.read(True)
    assert state.auth_reported is False and state.corruption_reported is True
    state.read(False)
    assert state.corruption_reported is False


def test_an_auth_error_is_an_error_verdict():
    outcome = RunState().failed(ApiError("no", status_code=403), interval_s=1.0)
    assert outcome.verdict is Verdict.ERROR and outcome.defer_s == 60.0
    assert math.isfinite(outcome.defer_s)


# --- the bug a surviving mutant revealed: list mode woke at once, for ever, with nothing to read ---


def test_list_mode_with_no_run_sleeps_until_told():
    s = schedule(mode="list")
    assert s.next_wake(5.0) == math.inf  # was -inf: the Monitor thread spun before the first run


def test_list_mode_after_its_last_run_left_sleeps_until_told():
    s = schedule(mode="list", interval_s=10.0, timeout_s=10.0)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 1, ["a"], 0.25)
    s.remove("a")
    assert s.next_wake(20.0) == math.inf  # was 10.0, in the past: a busy loop


def test_a_run_found_then_lost_again_is_looked_for_afresh():
    # Found on a page, a run is no longer being looked for: when it leaves its page later, the next
    # listing looks for it through the other pages again, not given up at once for the pages looked
    # through before it was found (mutmut: its "looking since" count kept after it was found).
    s = schedule(mode="list", page_size=3)
    account = [f"a{i}" for i in range(12)]  # 4 pages

    def listing(now: float) -> list[int]:
        asked, pending = [], list(s.plan(now).pages)
        while pending:
            offset = pending.pop(0)
            asked.append(offset)
            s.page_read(offset, len(account), account[offset : offset + 3], now)
            pending += s.plan(now).pages
        for run_id in [r for r in ("a1", "a4", "a7", "a10") if s.busy(r)]:
            s.finished(run_id, now)
        return asked

    s.add("a1", 0.0)
    assert listing(0.0) == [0, 3, 6, 9]
    now = 0.0
    for run_id in ("a4", "a7", "a10"):  # each new, then found on its page by reading the others
        now += 1.5
        s.add(run_id, now)
        s.finished(run_id, now)
        listing(now)
    account[account.index("a10")] = "zz"  # a10 leaves its page (page 9)
    now += 1.5
    assert listing(now) == [0, 3, 6, 9]  # its page, read as a target, no longer holds it
    account[account.index("zz")] = "a10"  # back on page 9, no longer a target
    now += 1.5
    assert listing(now) == [0, 3, 6, 9]  # looked for through the other pages: found on page 9
    assert s.listed("a10") is False and s.busy("a10") is False
