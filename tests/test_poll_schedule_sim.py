"""PollSchedule driven by a simulated monitor: runs taken up while listings run, pages and polls
answered after a set round trip, polls of a run's own by a pool of bounded throughput. No thread,
no clock: a heap of answer times.

A listing asks only the pages that held watched runs and looks through the others only for runs
on no known page (issue 16). A first version of that rule ended a monitor's first listing once the
one run it held was found; the thousands taken up meanwhile were polled alone, came back due while
the pages that would have placed them were read last, and went on being polled alone, listing
after listing. These tests hold the steady state of such a start: pages only.
"""

from __future__ import annotations

import heapq

import pytest

from tinker_recovery.poll_schedule import PollSchedule
from tinker_recovery.poll_settings import PollSettings


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
    answers: list[tuple[float, str, int]] = []  # (when, "page" or "run", offset or run index)
    index_of = {run_id: index for index, run_id in enumerate(ids)}
    added, now, pool_free_at = 0, 0.0, 0.0
    alone = pages = 0
    while now <= until_s:
        while added < runs and added * add_every_s <= now:
            schedule.add(ids[added], now)
            added += 1
        plan = schedule.plan(now)
        for offset in plan.pages:
            heapq.heappush(answers, (now + page_rtt_s, "page", offset))
        for run_id in plan.alone:
            pool_free_at = max(pool_free_at, now) + solo_s
            heapq.heappush(answers, (pool_free_at, "run", index_of[run_id]))
        if now > until_s - 1.0:
            alone += len(plan.alone)
            pages += len(plan.pages)
        wake = schedule.next_wake(now)
        if added < runs:
            wake = min(wake, added * add_every_s)
        if answers and answers[0][0] <= wake:
            when, kind, value = heapq.heappop(answers)
            now = max(now, when)
            if kind == "page":
                schedule.page_read(value, runs, ids[value : value + page_size], now)
            else:
                schedule.finished(ids[value], now)
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
