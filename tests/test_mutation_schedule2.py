"""PollSchedule edges the listing-first and solo-budget work added without an exact-number test:
the solo budget while a listing is in flight (its slots, its per-interval window, the runs it holds
back and when they wake), the page slots from the measured page round trip, an answer for a run
not in a poll of its own, the auto first look counted once per run, and the no-scan shortcut.
Written to kill the mutants mutmut made of poll_schedule.py (see docs/mutation.md). Pure: explicit
``now`` values, binary fractions so every sum is exact, no thread, no sleep."""

from __future__ import annotations

import math

import pytest

from tinker_recovery.poll_schedule import Plan, PollSchedule, page_slots, solo_budget
from tinker_recovery.poll_settings import PollSettings

MONITOR_ARGS = {
    "poll_timeout_s": 1.0,
    "rest_timeout_s": 30.0,
    "poll_concurrency": 4,
    "poll_mode": "auto",
    "list_page_size": 1,
}


def schedule(**overrides: object) -> PollSchedule:
    fields = {"interval_s": 1.0, "timeout_s": 1.0, "concurrency": 16, "mode": "per_run", "page_size": 100}
    fields.update(overrides)
    fields.setdefault("pages_per_job", 1)  # page by page (jobs: test_poll_schedule_jobs.py)
    return PollSchedule(PollSettings(**fields))  # type: ignore[arg-type]


def names(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{n}" for n in range(count))


# --- the pure helpers -----------------------------------------------------------------------------


def test_page_slots_exact():
    assert page_slots(100, 2.0, 0.05, 1, 64) == 5  # ceil(2 * 100 * 0.05 / 2)
    assert page_slots(10, 1.0, 0.0, 1, 64) == 1  # no round trip measured: no page busy
    assert page_slots(0, 1.0, 1.0, 1, 64) == 1  # no page: none busy, whatever the round trip
    assert page_slots(100, 1.0, 0.044, 4, 12) == 9
    assert page_slots(100, 1.0, 0.001, 4, 12) == 4
    assert page_slots(3, 1.0, 0.5, 4, 2) == 2  # the cap wins over the floor


def test_solo_budget_exact():
    assert solo_budget(16, 9, 0, 0) == 7  # the workers the pages leave
    assert solo_budget(16, 9, 5, 0) == 2  # less those polling alone
    assert solo_budget(16, 9, 0, 14) == 2  # at most concurrency per interval
    assert solo_budget(16, 20, 0, 0) == 1  # pages using every worker still leave one
    assert solo_budget(16, 9, 7, 0) == 0  # never negative, and 0 when every slot is busy
    assert solo_budget(16, 9, 9, 0) == 0
    assert solo_budget(16, 0, 0, 16) == 0


# --- the solo budget while a listing is in flight -------------------------------------------------


def _listing_with_no_covered_run(s: PollSchedule) -> None:
    """Start a listing at 0.0 whose first page stays in flight, then forget the run it covers."""
    s.add("a", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s.remove("a")
    assert s.listing


def test_the_solo_budget_counts_slots_and_starts_per_interval():
    # concurrency 8: 2 suspect slots, page slots min(32, 8 - 2) capped, at least 4 -> 4;
    # polls of a run's own: 8 - 4 = 4 at once, 8 per interval (the window began with the listing)
    s = schedule(mode="list", concurrency=8, page_size=1, interval_s=1.0, timeout_s=4.0)
    _listing_with_no_covered_run(s)
    runs = names("n", 12)
    for run_id in runs:
        s.add(run_id, 0.25)
    assert s.plan(0.25) == Plan(alone=runs[0:4])
    assert s.next_wake(0.25) == math.inf  # the 8 held are woken by an answer (every slot busy)
    s.finished("n0", 0.375)
    s.remove("n1")  # a run in flight forgotten frees its slot too
    assert s.plan(0.375) == Plan(alone=runs[4:6])  # 2 slots free
    for run_id in ("n2", "n3", "n4", "n5"):
        s.finished(run_id, 0.5)
    assert s.plan(0.5) == Plan(alone=runs[6:8])  # 4 slots free, but 6 + 2 = 8 started this interval
    for run_id in ("n6", "n7"):
        s.finished(run_id, 0.625)
    assert s.plan(0.625) == Plan()  # slots free, the interval's 8 starts spent
    assert s.next_wake(0.625) == 1.0  # the next window: one interval after the listing's first plan
    assert s.plan(0.96875) == Plan()  # horizon 1.01875, but the window restarts at 1.0 exactly
    assert s.plan(1.0) == Plan(alone=runs[8:12])


def test_held_runs_do_not_hide_the_earliest_due_run_after_them():
    s = schedule(mode="list", concurrency=8, page_size=1, interval_s=1.0, timeout_s=4.0)
    _listing_with_no_covered_run(s)
    runs = names("n", 6)
    for run_id in runs:
        s.add(run_id, 0.25)
    assert s.plan(0.25) == Plan(alone=runs[0:4])
    s.finished("n0", 0.375)  # back among the runs not in flight, due at 1.25
    assert s.plan(0.375) == Plan(alone=("n4",))  # n5 still held: its due time is not forgotten
    s.finished("n1", 0.5)
    assert s.plan(0.5) == Plan(alone=("n5",))


def test_held_runs_wake_at_once_when_the_listing_ends():
    s = schedule(mode="list", concurrency=8, page_size=1, interval_s=1.0, timeout_s=4.0)
    _listing_with_no_covered_run(s)
    runs = names("n", 6)
    for run_id in runs:
        s.add(run_id, 0.25)
    assert s.plan(0.25) == Plan(alone=runs[0:4])
    assert s.next_wake(0.25) == math.inf
    assert s.page_read(0, 1, [], 0.375) == ([], [])  # the listing ends: no budget any more
    assert not s.listing
    assert s.next_wake(0.375) == 0.25  # n4 and n5, due since 0.25: at once
    assert s.plan(0.375) == Plan(pages=(0,))  # 2 new runs, 1 page for the known total: listed
    assert s.listed("n4") and s.listed("n5")


def test_the_solo_budget_leaves_what_the_first_pages_use():
    # interval 0.25 s, no round trip measured yet: 4 page slots; 16 - 4 = 12 polls alone
    s = schedule(mode="list", concurrency=16, interval_s=0.25, timeout_s=1.0)
    s.add("a", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    runs = names("n", 14)
    for run_id in runs:
        s.add(run_id, 0.0625)
    assert s.plan(0.0625) == Plan(alone=runs[0:12])


def test_the_next_listing_counts_its_unread_first_page_with_the_last_round_trip():
    # the first listing's page took 1.5 s (1.5 intervals): the next listing's first page is counted
    # as one page at that round trip, ceil(2 * 1 * 1.5 / 1) = 3 -> at least 4 slots; 16 - 4 = 12
    s = schedule(mode="list", concurrency=16, interval_s=1.0, timeout_s=2.0)
    s.add("a", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    assert s.page_read(0, 1, ["a"], 1.5) == (["a"], [])
    assert s.plan(1.5) == Plan(pages=(0,))
    runs = names("n", 14)
    for run_id in runs:
        s.add(run_id, 1.5625)
    assert s.plan(1.5625) == Plan(alone=runs[0:12])


# --- page slots from the measured round trip ------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "started", "expected"),
    [
        (100, 0.0, (1, 2, 3, 4, 5, 6)),  # ceil(2 * 100 * 0.0625) = 13, capped at 8 - 2 suspect slots
        (40, 0.5, (1, 2, 3, 4, 5)),  # ceil(2 * 40 * 0.0625) = 5, between the floor and the cap
    ],
)
def test_page_slots_follow_the_first_pages_round_trip(total, started, expected):
    s = schedule(mode="list", concurrency=8, page_size=1, interval_s=1.0, timeout_s=1.0)
    s.add("a", started)
    assert s.plan(started) == Plan(pages=(0,))
    s.page_read(0, total, [], started + 0.0625)  # a not found yet: the listing reads on
    assert s.plan(started + 0.0625) == Plan(pages=expected)


def test_page_slots_follow_the_least_round_trip_not_the_last():
    # concurrency 16: cap min(32, 12); 40 pages
    s = schedule(mode="list", concurrency=16, page_size=1, interval_s=1.0, timeout_s=1.0)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 40, [], 0.0)  # no round trip: the floor, 4 pages (a not found yet)
    assert s.plan(0.0) == Plan(pages=(1, 2, 3, 4))
    s.page_read(1, 40, [], 0.125)  # a server busy with the pages asked answers later: still 4 at once
    assert s.plan(0.125) == Plan(pages=(5,))
    s.page_read(2, 40, [], 0.5)  # half an interval in, 36 pages left: behind, so the last round trip
    assert s.plan(0.5) == Plan(pages=tuple(range(6, 15)))  # ceil(2 * 40 * 0.5) = 40, capped at 12


def test_page_slots_follow_answers_that_stay_slow_from_the_next_listing_on():
    # b is on no page (each listing leaves it unread): the listings look through the pages for it
    s = schedule(mode="list", concurrency=16, page_size=1, interval_s=1.0, timeout_s=1.0)
    s.add("a", 0.0)
    s.add("b", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s.page_read(0, 8, ["a"], 0.05)  # 50 ms a page: ceil(2 * 8 * 0.05) = 1, the floor of 4
    assert s.plan(0.05) == Plan(pages=(1, 2, 3, 4))
    for offset in (1, 2, 3, 4):
        s.page_read(offset, 8, [], 0.1)
    assert s.plan(0.1) == Plan(pages=(5, 6, 7))
    for offset in (5, 6):
        s.page_read(offset, 8, [], 0.15)
    assert s.page_read(7, 8, [], 0.15) == ([], ["b"])
    assert s.plan(0.15) == Plan(alone=("b",))
    s.finished("b", 0.2)  # due at 1.15
    assert not s.listing and s.next_wake(0.2) == 1.0
    assert s.plan(1.0) == Plan(pages=(0,))  # the next listing: 400 ms a page from now on
    s.page_read(0, 8, ["a"], 1.4)
    assert s.plan(1.4) == Plan(pages=(1, 2, 3, 4), alone=("b",))  # the last listing's 50 ms still sizes it
    s.finished("b", 1.5)
    for offset in (1, 2, 3, 4):
        s.page_read(offset, 8, [], 2.0)
    s.add("c", 2.0)  # (b, not found in a whole account's worth of pages, is no longer looked for)
    assert s.plan(2.0) == Plan(pages=(0,))  # cut short at its time budget; the next one starts
    s.page_read(0, 8, ["a"], 2.4)
    # ceil(2 * 8 * 0.4) = 7: all the rest, from where the last listing stopped
    assert s.plan(2.4) == Plan(pages=(5, 6, 7, 1, 2, 3, 4))


@pytest.mark.parametrize("concurrency", [1, 2])
def test_one_worker_left_by_the_suspect_slots_reads_one_page_at_a_time(concurrency):
    s = schedule(mode="list", concurrency=concurrency, page_size=1, interval_s=1.0, timeout_s=1.0)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 3, [], 0.0)  # a not found yet
    assert s.plan(0.0) == Plan(pages=(1,))


# --- list mode: a listing that learned no total ---------------------------------------------------


def test_a_new_run_after_a_failed_first_page_counts_pages_from_the_watched_runs():
    s = schedule(mode="list", page_size=1, interval_s=1.0, timeout_s=1.0)
    s.add("a", 0.0)
    s.add("b", 0.0)
    s.plan(0.0)
    assert s.page_failed(0.125) == ["a", "b"]  # no total learned
    assert s.known_total is None
    s.add("c", 0.25)
    assert s.plan(0.25) == Plan(alone=("a", "b", "c"))  # 1 new run, 3 pages for 3 runs: alone
    s2 = schedule(mode="list", page_size=100, interval_s=1.0, timeout_s=1.0)
    s2.add("a", 0.0)
    s2.plan(0.0)
    s2.page_failed(0.125)
    assert s2.plan(0.125) == Plan(alone=("a",))
    s2.add("c", 0.25)
    assert s2.plan(0.25) == Plan(pages=(0,))  # 1 new run, 1 page for 2 runs: list early


# --- an answer for a run not in a poll of its own (removed and watched again meanwhile) -----------


def test_an_answer_for_a_run_not_in_flight_sets_its_next_poll():
    s = schedule()
    s.add("a", 0.0)
    assert s.plan(0.0) == Plan(alone=("a",))
    s.remove("a")
    s.add("a", 0.125)  # watched again while its old poll is in flight
    assert s.plan(0.125) == Plan(alone=("a",))
    s.remove("a")
    s.add("a", 0.25)
    s.finished("a", 0.25, defer_s=2.0)  # the old poll's Retry-After
    assert s.next_wake(0.25) == 2.25
    assert s.plan(0.25) == Plan()


def test_a_timed_out_answer_before_any_plan_still_counts_for_the_next_wake():
    s = schedule()
    s.add("a", 0.0)
    s.finished("a", 0.5, timed_out=True)  # the answer of a poll not planned here
    assert s.next_wake(0.5) == 0.0  # due since it was added; no suspect waits for a slot
    assert s.plan(0.5) == Plan(alone=("a",))


# --- suspects and the wake ------------------------------------------------------------------------


def test_a_plan_with_nothing_due_leaves_no_suspect_waiting():
    s = schedule()
    s.add("a", 0.0)
    s.plan(0.0)
    s.finished("a", 0.5, timed_out=True)  # a suspect, due at 1.0
    assert s.plan(0.625) == Plan()
    assert s.next_wake(0.625) == 1.0


def test_the_wake_scans_past_runs_in_flight_and_suspects_waiting():
    s = schedule(concurrency=4)  # 1 suspect slot
    s.add("a", 0.0)
    s.add("b", 0.0)
    s.plan(0.0)
    s.finished("a", 0.5, timed_out=True)
    s.finished("b", 0.5, timed_out=True)
    s.add("c", 0.5)
    assert s.plan(0.5) == Plan(alone=("c",))
    s.finished("c", 0.75)  # due at 1.5
    assert s.plan(1.0) == Plan(alone=("a",), waiting=("b",))
    assert s.next_wake(1.0) == 1.5  # a in flight, b waiting for a's slot: c's poll


# --- auto: each run counted once for the first look -----------------------------------------------


def test_auto_counts_a_run_looked_at_twice_once():
    s = schedule(mode="auto")
    for run_id in "abc":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(alone=("a", "b", "c"))
    s.finished("a", 0.125)
    assert s.plan(1.0) == Plan(alone=("a",))
    s.finished("a", 1.125)  # a looked at a second time
    s.finished("b", 1.125)
    assert s.mode == "per_run"  # c not looked at yet


def test_auto_counts_a_run_removed_unseen_once():
    s = schedule(mode="auto")
    for run_id in "abcd":
        s.add(run_id, 0.0)
    s.remove("d")
    s.plan(0.0)
    s.finished("a", 0.125)
    s.finished("b", 0.125)
    assert s.mode == "per_run"  # c not looked at yet
    s.finished("c", 0.125)
    assert s.mode == "list"


# --- the no-scan shortcut (issue 16: a tick with nothing due scans no run) ------------------------


class _NoScan(dict):
    """The watched runs, refusing a scan of them all (a lookup by id is fine)."""

    def items(self):
        raise AssertionError("scanned every run")

    def values(self):
        raise AssertionError("scanned every run")


def test_a_wake_with_nothing_due_scans_no_run():
    s = schedule()
    for run_id in "abc":
        s.add(run_id, 0.0)
    s.plan(0.0)
    for run_id in "abc":
        s.finished(run_id, 0.25)
    s._runs = _NoScan(s._runs)
    assert s.next_wake(0.5) == 1.0
    assert s.plan(0.5) == Plan()


def test_a_wake_during_a_listing_scans_no_run():
    s = schedule(mode="list", interval_s=1.0, timeout_s=1.0)
    for run_id in "abc":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s._runs = _NoScan(s._runs)
    assert s.next_wake(0.25) == 1.0
    assert s.plan(0.25) == Plan()


def test_a_retry_after_that_keeps_the_due_time_keeps_the_wake_exact():
    s = schedule(mode="list", page_size=1, interval_s=1.0, timeout_s=1.0)
    for run_id in "abc":
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s.page_read(0, 3, ["a"], 0.0)
    assert s.plan(0.0) == Plan(pages=(1, 2))
    assert s.page_failed(0.25, defer_s=0.75, offset=1) == []  # b and c stay due at 1.0; page 2 in flight
    s._runs = _NoScan(s._runs)
    assert s.next_wake(0.25) == 1.0


# --- PollSettings.for_monitor: the lower bounds are the Monitor's, named by its arguments ----------


@pytest.mark.parametrize(
    ("interval_s", "change", "message"),
    [
        (0.0005, {}, "poll_interval_ms: must be at least 0.001 s, got 0.0005"),
        (1.0, {"list_page_size": 0}, "list_page_size: must be at least 1, got 0"),
    ],
)
def test_for_monitor_names_the_monitors_argument_below_its_floor(interval_s, change, message):
    with pytest.raises(ValueError) as info:
        PollSettings.for_monitor(interval_s, **{**MONITOR_ARGS, **change})
    assert str(info.value) == message
