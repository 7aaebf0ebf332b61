"""The listing-first rules of PollSchedule (issue 16): exact numbers, no thread, no clock.

Settings throughout: interval 1 s, concurrency 16 (suspect slots 4), page size 100, so a listing
reads at most min(page_concurrency=32, 16 - 4) = 12 pages at once.
"""

from __future__ import annotations

import math

import pytest

from tinker_recovery.poll_schedule import MIN_PAGE_SLOTS, Plan, PollSchedule, page_slots, solo_budget
from tinker_recovery.poll_settings import PollSettings


def schedule(**overrides: object) -> PollSchedule:
    fields = {"interval_s": 1.0, "timeout_s": 5.0, "concurrency": 16, "mode": "list", "page_size": 100}
    fields.update(overrides)
    fields.setdefault("pages_per_job", 1)  # page by page (jobs: test_poll_schedule_jobs.py)
    return PollSchedule(PollSettings(**fields))  # type: ignore[arg-type]


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


@pytest.mark.parametrize(
    ("pages", "interval_s", "rtt", "floor", "cap", "expected"),
    [
        (100, 1.0, 0.044, 4, 12, 9),  # ceil(2 * 100 * 0.044 / 1) = ceil(8.8)
        (100, 1.0, 0.1, 4, 12, 12),  # 20 needed, capped
        (100, 1.0, 0.001, 4, 12, 4),  # the floor
        (3, 1.0, 0.5, 4, 2, 2),  # the cap wins over the floor
        (1, 1.0, 0.0, 4, 0, 1),  # at least one
        (300, 2.0, 0.044, 4, 48, 14),  # ceil(13.2)
    ],
)
def test_page_slots(pages: int, interval_s: float, rtt: float, floor: int, cap: int, expected: int) -> None:
    assert page_slots(pages, interval_s, rtt, floor, cap) == expected


@pytest.mark.parametrize(
    ("concurrency", "pages", "solo", "started", "expected"),
    [
        (16, 9, 0, 0, 7),
        (16, 9, 5, 0, 2),
        (16, 9, 0, 14, 2),  # the interval's budget nearly spent
        (16, 9, 0, 16, 0),
        (16, 20, 0, 0, 1),  # pages hold every worker: still one single read at a time
        (16, 20, 1, 0, 0),
        (16, 4, 20, 0, 0),  # never negative
    ],
)
def test_solo_budget(concurrency: int, pages: int, solo: int, started: int, expected: int) -> None:
    assert solo_budget(concurrency, pages, solo, started) == expected


def test_pages_of_a_listing_go_as_many_at_once_as_the_round_trip_needs() -> None:
    s = schedule()
    s.add("a", 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    s.page_read(0, 10_000, [], 0.044)  # 100 pages at 44 ms: 9 at once read them in half an interval
    assert s.plan(0.044).pages == tuple(range(100, 1000, 100))
    assert s.next_wake(0.044) == 1.0  # every slot busy: a's deadline
    s.page_read(100, 10_000, [], 0.144)  # 100 ms: the least round trip (44 ms) still sizes it, 1 more
    assert s.plan(0.144).pages == (1000,)


def test_the_page_cap_follows_concurrency_and_page_concurrency() -> None:
    s = schedule(concurrency=64, page_concurrency=16)  # min(16, 64 - 16)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 10_000, [], 0.1)
    assert len(s.plan(0.1).pages) == 16
    s = schedule(page_concurrency=1)
    s.add("a", 0.0)
    s.plan(0.0)
    s.page_read(0, 10_000, [], 0.1)
    assert s.plan(0.1).pages == (100,)
    assert MIN_PAGE_SLOTS == 4


def test_new_runs_during_a_listing_are_read_alone_only_within_the_budget() -> None:
    s = schedule()
    for run_id in ids("w", 50):
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))  # 50 new runs: one listing reads them
    for run_id in ids("n", 40):
        s.add(run_id, 0.1)
    # page 0 in flight, total unknown: 4 page slots, so 16 - 4 = 12 single reads
    assert s.plan(0.1) == Plan(alone=tuple(ids("n", 12)))
    assert s.next_wake(0.1) == 1.0  # the held runs wait for a poll to end (w*'s deadline is 1.0)
    for run_id in ids("n", 3):
        s.finished(run_id, 0.2)
    assert s.plan(0.2) == Plan(alone=("n12", "n13", "n14"))  # 3 slots freed
    for run_id in ids("n", 15):
        s.finished(run_id, 0.3)
    assert s.plan(0.3) == Plan(alone=("n15",))  # 16 started this interval: the window's budget is spent
    assert s.plan(0.4) == Plan()
    assert s.next_wake(0.4) == 1.0  # min(w*'s deadline 1.0, the next window 1.1)


def test_held_new_runs_are_read_by_the_next_listing() -> None:
    s = schedule()
    s.add("a", 0.0)
    s.plan(0.0)
    for run_id in ids("n", 20):
        s.add(run_id, 0.1)
    assert len(s.plan(0.1).alone) == 12
    read, unread = s.page_read(0, 1, ["a"], 0.15)  # the listing ends: 8 new runs left, 1 page
    assert (read, unread) == (["a"], [])
    plan = s.plan(0.15)  # 8 new runs >= 1 page: a listing reads them, not 8 GETs
    assert plan == Plan(pages=(0,))
    assert s.listed("n12") and s.listed("n19") and not s.listed("n0")


def test_runs_unread_one_interval_into_a_listing_go_alone_within_the_budget() -> None:
    s = schedule()
    for run_id in ids("r", 100):
        s.add(run_id, 0.0)
    s.plan(0.0)
    s.page_read(0, 10_000, [], 0.5)  # 500 ms a page: 12 pages at once
    assert len(s.plan(0.5).pages) == 12
    # one interval in: 100 runs unread, 16 - 12 = 4 may be read alone, the rest wait for pages
    assert s.plan(1.0) == Plan(alone=("r0", "r1", "r2", "r3"))
    assert s.next_wake(1.0) == math.inf  # held until a poll or a page ends
    assert s.listed("r4") and not s.listed("r0")
    read, _ = s.page_read(100, 10_000, ["r4", "r5"], 1.1)  # the pages still read them
    assert read == ["r4", "r5"]
    assert s.plan(1.1).pages == (1300,)  # the freed page slot goes to a page first


def test_without_a_listing_there_is_no_budget() -> None:
    s = schedule(mode="per_run")
    for run_id in ids("r", 100):
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(alone=tuple(ids("r", 100)))


def test_removing_a_run_polled_alone_lets_a_held_run_take_its_slot() -> None:
    s = schedule()
    s.add("a", 0.0)
    s.plan(0.0)  # page 0 in flight: 12 single reads at once, the rest held
    for run_id in ids("n", 20):
        s.add(run_id, 0.1)
    assert s.plan(0.1).alone == tuple(ids("n", 12))
    s.remove("n0")  # its poll's slot is free now (its answer will be ignored)
    assert s.plan(0.1) == Plan(alone=("n12",))


def test_held_runs_on_pages_not_asked_for_do_not_spin_the_loop() -> None:
    """The listing's first page is slow, so its runs fall due before their pages can be asked for:
    the budget lets some go alone and holds the rest; the next wake is not in the past (a loop of
    plans that hold them again), but when a page or a poll ends."""
    s = schedule(page_size=3, concurrency=8, timeout_s=1.0)
    for n in range(30):
        s.add(f"r{n}", 0.0)
    asked: list[int] = []
    for tick in range(30):  # a first listing, read in order: every page gets a due time
        asked += s.plan(tick / 100).pages
        if asked:
            offset = asked.pop(0)
            s.page_read(offset, 30, [f"r{n}" for n in range(offset, offset + 3)], tick / 100)
    assert s.plan(1.0) == Plan(pages=(0,))  # the next listing; its first page is not answered
    assert s.plan(1.3) == Plan(alone=("r3", "r4", "r5", "r6"))  # 8 - 4 page slots; the rest held
    assert s.next_wake(1.3) == pytest.approx(2.0)  # not 1.07, the due time of the pages not asked for


def test_a_page_reads_its_watched_runs_past_the_ones_not_watched() -> None:
    s = schedule()
    for run_id in ("a", "b"):
        s.add(run_id, 0.0)
    assert s.plan(0.0) == Plan(pages=(0,))
    read, _ = s.page_read(0, 4, ["someone-else", "a", "gone", "b"], 0.1)
    assert read == ["a", "b"]
    assert s._page_runs == {0: 2}  # the page holds both now: when both leave it, its due time goes
    s.remove("a")
    s.remove("b")
    assert s._page_runs == {} and s._page_due == {}
