"""PollSchedule driven by a simulated monitor: runs taken up while listings run, pages and polls
answered after a set round trip (the pages of one job one after the other), polls of a run's own
by a pool of bounded throughput. No thread, no clock: a heap of answer times.

A listing asks only the pages that held watched runs and looks through the others only for runs
on no known page (issue 16). A first version of that rule ended a monitor's first listing once the
one run it held was found; the thousands taken up meanwhile were polled alone, came back due while
the pages that would have placed them were read last, and went on being polled alone, listing
after listing. These tests hold the steady state of such a start: pages only.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence

import pytest

from tinker_recovery.poll_schedule import PollSchedule
from tinker_recovery.poll_settings import PollSettings


def goes_out(
    schedule: PollSchedule, job: tuple[Sequence[int], float], now: float
) -> tuple[int, list[int], float] | None:
    """A job's next page (``job``: its pages left and its ``pages_until``) goes out at ``now``, as
    ``Poller._read_pages`` sends it: ``(offset, the pages after it, until)``; None when ``now`` is
    past ``until`` (every page left is skipped)."""
    (offset, *rest), until = job
    if now >= until:
        for page in (offset, *rest):
            schedule.page_skipped(page, now)
        return None
    return offset, rest, until


def simulate(
    runs: int, page_size: int, add_every_s: float, page_rtt_s: float, solo_s: float, until_s: float
) -> tuple[int, int]:
    """Run a list-mode schedule of ``runs`` runs on an account of as many (all watched), one run
    taken up every ``add_every_s``; a page answers ``page_rtt_s`` after it is asked, a poll of a
    run's own when the pool (one answer every ``solo_s``) comes to it. Return the polls of a run's
    own and the pages asked in the last second before ``until_s``."""
    schedule = PollSchedule(
        PollSettings(interval_s=1.0, timeout_s=1.0, concurrency=16, mode="list", page_size=page_size)
    )
    ids = [f"r{index:05d}" for index in range(runs)]
    # (when, sequence, "start" (a job's next page goes out), "page" or "run", job or run index,
    # when the page went out)
    answers: list[tuple[float, int, str, object, float]] = []
    index_of = {run_id: index for index, run_id in enumerate(ids)}
    added, now, pool_free_at, sequence = 0, 0.0, 0.0, 0
    alone = pages = 0
    while now <= until_s:
        while added < runs and added * add_every_s <= now:
            schedule.add(ids[added], now)
            added += 1
        plan = schedule.plan(now)
        for job in plan.page_jobs:
            sequence += 1
            heapq.heappush(answers, (now, sequence, "start", (job, plan.pages_until), now))
        for run_id in plan.alone:
            pool_free_at = max(pool_free_at, now) + solo_s
            sequence += 1
            heapq.heappush(answers, (pool_free_at, sequence, "run", index_of[run_id], now))
        if now > until_s - 1.0:
            alone += len(plan.alone)
            pages += len(plan.pages)
        wake = schedule.next_wake(now)
        if added < runs:
            wake = min(wake, added * add_every_s)
        if answers and answers[0][0] <= wake:
            when, _, kind, value, began = heapq.heappop(answers)
            now = max(now, when)
            if kind == "start":
                out = goes_out(schedule, value, now)  # type: ignore[arg-type]
                if out is not None:
                    sequence += 1
                    heapq.heappush(answers, (now + page_rtt_s, sequence, "page", out, now))
            elif kind == "page":
                offset, rest, until = value  # type: ignore[misc]
                ids_on_page = ids[offset : offset + page_size]
                schedule.page_read(offset, runs, ids_on_page, now, started=began, round_trip_s=now - began)
                if rest:
                    sequence += 1
                    heapq.heappush(answers, (now, sequence, "start", (tuple(rest), until), now))
            else:
                schedule.finished(ids[value], now)  # type: ignore[index]
        else:
            now = max(now, wake)
    return alone, pages


@pytest.mark.parametrize(
    ("add_every_s", "page_rtt_s", "solo_s"),
    [
        (0.0005, 0.01, 0.005),  # 2,000 runs taken up in 1 s; a pool of 200 polls a second
        (0.0005, 0.03, 0.0015),
        (0.001, 0.01, 0.005),
    ],
)
def test_runs_taken_up_while_listings_run_end_up_read_by_pages_only(
    add_every_s: float, page_rtt_s: float, solo_s: float
) -> None:
    alone, pages = simulate(2000, 20, add_every_s, page_rtt_s, solo_s, until_s=5.0)
    assert alone == 0
    assert pages == 100  # one listing of 100 pages in the last second


# --- an account that changes: runs watched among others, pages answered from a live list ------------


Event = tuple[float, Callable[[list[str], PollSchedule, float], None]]


def drive(
    account: list[str],
    watched: list[str],
    until_s: float,
    *,
    events: Sequence[Event] = (),
    page_size: int = 10,
    rtt_s: float = 0.01,
    count_from_s: float = 0.0,
) -> tuple[int, int, float]:
    """A list-mode schedule over ``watched`` runs of ``account`` (a list the ``events`` change at
    their times; a page answers from it as it is when its request goes out, the pages of a job one
    after the other), pages and polls of a run's own each answered ``rtt_s`` later. Return the
    pages asked and the polls of a run's own from ``count_from_s`` on, and the longest time between
    two asks that read one watched run."""
    schedule = PollSchedule(
        PollSettings(interval_s=1.0, timeout_s=1.0, concurrency=16, mode="list", page_size=page_size)
    )
    last_read: dict[str, float] = {}
    for run_id in watched:
        schedule.add(run_id, 0.0)
        last_read[run_id] = 0.0
    pending = sorted(events, key=lambda event: event[0])
    answers: list[tuple[float, int, str, object, float, list[str], int]] = []
    now, sequence, pages, alone, longest = 0.0, 0, 0, 0, 0.0
    asked_this_listing: set[int] = set()
    while now <= until_s:
        while pending and pending[0][0] <= now:
            pending.pop(0)[1](account, schedule, now)
        plan = schedule.plan(now)
        if 0 in plan.pages:  # page 0 opens every listing
            asked_this_listing.clear()
        assert not asked_this_listing & set(plan.pages), "a page asked twice in one listing"
        asked_this_listing.update(plan.pages)
        for job in plan.page_jobs:
            sequence += 1
            heapq.heappush(answers, (now, sequence, "start", (job, plan.pages_until), now, [], 0))
        pages += len(plan.pages) if now >= count_from_s else 0
        for run_id in plan.alone:
            sequence += 1
            heapq.heappush(answers, (now + rtt_s, sequence, "run", run_id, now, [], 0))
            alone += now >= count_from_s
        wake = schedule.next_wake(now)
        if pending:
            wake = min(wake, pending[0][0])
        if answers and answers[0][0] <= wake:
            when, _, kind, what, asked, run_ids, total = heapq.heappop(answers)
            now = max(now, when)
            read = []
            if kind == "start":  # a job's next page goes out: it answers from the account as it is now
                out = goes_out(schedule, what, now)  # type: ignore[arg-type]
                if out is not None:
                    sequence += 1
                    page = account[out[0] : out[0] + page_size]
                    heapq.heappush(answers, (now + rtt_s, sequence, "page", out, now, page, len(account)))
            elif kind == "page":
                offset, rest, until = what  # type: ignore[misc]
                read = schedule.page_read(
                    offset, total, run_ids, now, started=asked, round_trip_s=now - asked
                )[0]
                if rest:
                    sequence += 1
                    heapq.heappush(answers, (now, sequence, "start", (tuple(rest), until), now, [], 0))
            else:
                assert isinstance(what, str)
                schedule.finished(what, now)
                read = [what]
            for run_id in read:
                if run_id in last_read:
                    if asked >= count_from_s:
                        longest = max(longest, asked - last_read[run_id])
                    last_read[run_id] = max(last_read[run_id], asked)
        elif wake == math.inf:
            break
        else:
            now = max(now, wake)
    return pages, alone, longest


def _delete_near_the_front(account: list[str], schedule: PollSchedule, now: float) -> None:
    del account[5]  # an unwatched run: every older one slides back a place


@pytest.mark.parametrize("rtt_s", [0.01, 0.02])
def test_a_run_that_slides_to_the_next_page_is_found_there_within_an_interval(rtt_s: float) -> None:
    # a0980 leaves page 980 for page 970: the listing asks the pages next to it at once; before,
    # it was polled alone at the listing's end and looked for from the cursor a listing later,
    # 1.23 s (1.46 s at 20 ms) after its last read
    account = [f"a{index:04d}" for index in range(1000)]
    pages, alone, longest = drive(
        account,
        ["a0990", "a0980"],
        6.0,
        events=[(0.9, _delete_near_the_front)],
        rtt_s=rtt_s,
        count_from_s=0.5,
    )
    assert longest <= 1.0 + 2 * rtt_s
    assert alone == 0 and pages <= 25  # 3 pages a listing, and the two pages next to the one that lost it


def test_a_run_new_to_the_account_is_found_while_another_moves_between_pages() -> None:
    # a3 leaves page 2 for page 4 in the listing that looks for a20: before, finding a3 counted
    # as finding a20 (the count of runs looked for went to 0, then below), and a20 was left unread
    account = [f"a{index}" for index in range(40)]
    schedule = PollSchedule(
        PollSettings(interval_s=1.0, timeout_s=1.0, concurrency=16, mode="list", page_size=2)
    )
    schedule.add("a3", 0.0)
    schedule.add("a4", 0.0)

    def listing(now: float) -> tuple[int, tuple[str, ...]]:
        asked = 0
        while True:
            plan = schedule.plan(now)
            if not plan.pages and not schedule.listing:
                return asked, plan.alone
            now += 0.01
            for offset in plan.pages:
                asked += 1
                schedule.page_read(offset, len(account), account[offset : offset + 2], now)

    listing(0.0)
    account.insert(0, "new-front-run")
    schedule.add("a20", 1.0)
    asked, alone = listing(1.0)
    assert alone == () and asked < 21
    assert not schedule.listed("a20") and schedule._runs["a20"].page == 20


def test_watched_runs_all_on_page_0_do_not_make_a_new_runs_listing_read_every_page() -> None:
    def new_watched_run(account: list[str], schedule: PollSchedule, now: float) -> None:
        account.insert(0, "mine-new")
        schedule.add("mine-new", now)

    account = [f"a{index:05d}" for index in range(3000)]  # 300 pages of 10, newest first
    pages, _, _ = drive(account, account[:5], 3.9, events=[(2.3, new_watched_run)], count_from_s=2.5)
    assert pages == 1  # page 0 holds the new run too (a first version read all 300)


def test_a_watched_run_no_page_returns_stops_being_looked_for_after_a_whole_account() -> None:
    # another owner's run: looked for page by page, every listing read some 230 of the 300 pages
    # an interval for it (0.1.0 read all 300); now it is looked for through one account's worth of
    # pages, then only polled alone, each interval
    rng = random.Random(1)
    account = [f"a{index:05d}" for index in range(3000)]
    watched = rng.sample(account, 20)
    quiet = drive(list(account), watched, 20.0, count_from_s=10.0)
    foreign = drive(list(account), [*watched, "other-owners-run"], 20.0, count_from_s=10.0)
    assert quiet[0] <= 215 and quiet[1] == 0  # 21 pages an interval at most: page 0 and 20 targets
    assert foreign[0] <= quiet[0] + 10  # not a page more an interval than without it
    assert 9 <= foreign[1] <= 11  # the other owner's run: polled alone once an interval
    assert foreign[2] <= 1.0 + 0.05


def test_under_churn_no_page_is_asked_twice_and_no_run_waits_much_past_an_interval() -> None:
    # another user's run is inserted at the front every 0.1 s: every watched run slides a place
    # each time, and crosses to the next page now and then
    inserted = iter(range(10**6))

    def insert_at_the_front(account: list[str], schedule: PollSchedule, now: float) -> None:
        account.insert(0, f"other{next(inserted)}")

    rng = random.Random(1)
    account = [f"a{index:05d}" for index in range(3000)]
    watched = rng.sample(account, 20)
    events = [(0.5 + step * 0.1, insert_at_the_front) for step in range(200)]
    pages, alone, longest = drive(account, watched, 20.0, events=events, rtt_s=0.02, count_from_s=10.0)
    assert longest <= 1.0 + 0.1 + 0.05 + 2 * 0.02  # the documented bound: (1 + LAG_SHARE) interval + slack
    assert pages < 3000 / 10 * 10  # fewer than 0.1.0's whole account every interval
    assert alone < 20 * 10  # fewer than one poll of its own per watched run an interval
