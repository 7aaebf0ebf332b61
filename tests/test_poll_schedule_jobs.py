"""Listing pages read in jobs (issue 16): a worker reads several pages one after the other.

Exact numbers on PollSchedule (no thread, no clock), then the Poller's workers on real threads
against a stand-in listing (a stand-in by design: what is asserted is which thread reads which
page in which order, and what is left unread).

Settings: interval 1 s, concurrency 16 (suspect slots 4), page size 100, ``pages_per_job`` 25, so a
listing reads at least 4 (``MIN_PAGE_SLOTS``) and at most 12 pages at once.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tinker_recovery.poll_schedule import PAGE_JOB_SHARE, PollSchedule, pages_per_job
from tinker_recovery.poll_settings import PollSettings


def schedule(**overrides: object) -> PollSchedule:
    fields = {"interval_s": 1.0, "timeout_s": 5.0, "concurrency": 16, "mode": "list", "page_size": 100}
    fields.update(overrides)
    return PollSchedule(PollSettings(**fields))  # type: ignore[arg-type]


def ids(start: int, count: int) -> list[str]:
    return [f"r{i:05d}" for i in range(start, start + count)]


def listed(runs: int, rtt: float = 0.001, **overrides: object) -> PollSchedule:
    """A list schedule of ``runs`` watched runs (the whole account) whose first page answered at
    ``rtt``: every other page is a target of this first listing."""
    s = schedule(**overrides)
    for run_id in ids(0, runs):
        s.add(run_id, 0.0)
    assert s.plan(0.0).page_jobs == ((0,),)  # page 0 alone: it tells the count
    s.page_read(0, runs, ids(0, 100), rtt)
    return s


@pytest.mark.parametrize(
    ("pages", "jobs", "interval_s", "rtt", "cap", "expected"),
    [
        (99, 4, 1.0, 0.0005, 25, 25),  # ceil(99 / 4)
        (99, 4, 1.0, 0.0005, 10, 10),  # the cap
        (99, 4, 1.0, 0.001, 25, 20),  # floor(0.02 / 0.001): a job ends within a fiftieth of the interval
        (99, 9, 1.0, 0.044, 25, 1),  # floor(0.45): a page this slow goes alone
        (99, 4, 10.0, 0.044, 25, 4),  # floor(4.5) at a 10 s interval
        (99, 4, 1.0, 0.0, 25, 25),  # no round trip yet: no time bound
        (3, 4, 1.0, 0.001, 25, 1),
        (99, 4, 1.0, 0.005, 25, 4),  # floor(0.02 / 0.005)
        (0, 4, 1.0, 0.001, 25, 1),
        (10, 0, 1.0, 0.001, 25, 10),  # no job counts as one
        (100, 2, 2.0, 0.01, 1000, 4),  # floor(0.02 * 2 / 0.01)
    ],
)
def test_pages_per_job(pages: int, jobs: int, interval_s: float, rtt: float, cap: int, expected: int) -> None:
    assert pages_per_job(pages, jobs, interval_s, rtt, cap) == expected


def test_a_fast_listing_goes_in_as_few_jobs_as_its_slots() -> None:
    s = listed(1000)
    plan = s.plan(0.001)
    # 9 pages left, 4 slots: ceil(9/4), then ceil(6/3), ceil(4/2), ceil(2/1)
    assert plan.page_jobs == ((100, 200, 300), (400, 500), (600, 700), (800, 900))
    assert plan.pages == tuple(range(100, 1000, 100))
    assert plan.pages_until == 5.0  # the listing's budget: timeout_s after it began
    assert s.plan(0.002).pages == ()  # every slot holds a job
    assert s.next_wake(0.002) > 0.002  # and no wake-up until an outcome


def test_one_job_per_page_with_pages_per_job_1() -> None:
    s = listed(1000, pages_per_job=1)
    assert s.plan(0.001).page_jobs == ((100,), (200,), (300,), (400,))


def test_a_slower_server_gets_shorter_jobs() -> None:
    s = listed(10_000, rtt=0.004)
    jobs = s.plan(0.004).page_jobs
    assert len(jobs) == 4  # page_slots: ceil(2 * 100 * 0.004 / 1) = 1, at least MIN_PAGE_SLOTS
    assert {len(job) for job in jobs} == {int(PAGE_JOB_SHARE / 0.004)}  # 5 pages: 20 ms a job
    s = listed(10_000, rtt=0.044)
    jobs = s.plan(0.044).page_jobs
    assert len(jobs) == 9 and {len(job) for job in jobs} == {1}  # 44 ms: one page a job, as many at once


def test_a_job_ends_with_its_last_page_and_frees_its_slot() -> None:
    s = listed(2000, pages_per_job=3)
    assert s.plan(0.001).page_jobs == ((100, 200, 300), (400, 500, 600), (700, 800, 900), (1000, 1100, 1200))
    for offset in (100, 300):  # two of the first job's three pages (in any order): no slot yet
        s.page_read(offset, 2000, ids(offset, 100), 0.002)
        assert s.plan(0.002).pages == ()
    s.page_read(200, 2000, ids(200, 100), 0.003)
    assert s.next_wake(0.003) == 0.003  # a slot is free (9 pages of other jobs are in flight)
    assert s.plan(0.003).page_jobs == ((1300, 1400, 1500),)  # the cap, then the next targets in order


def test_a_later_page_of_a_job_is_due_from_when_its_request_went_out() -> None:
    s = listed(1000)
    s.plan(0.001)
    # page 300 is the job's third: its request went out at 0.021, 20 ms after it was asked
    read, _ = s.page_read(300, 1000, ids(300, 100), 0.031, started=0.021, round_trip_s=0.010)
    assert len(read) == 100
    lag = max(2 * 0.010, 0.021 - 0.0)  # two round trips, or how far into the listing it went out
    assert s._runs["r00300"].next_due == pytest.approx(0.021 + 1.0 + 0.05 + lag)


def test_a_jobs_round_trip_is_its_own_not_the_time_since_it_was_asked() -> None:
    s = listed(10_000)
    s.plan(0.001)
    # the fourth page of a job answered 40 ms after the job was asked, each page in 10 ms
    s.page_read(400, 10_000, ids(400, 100), 0.041, started=0.031, round_trip_s=0.010)
    assert s._page_rtt == 0.010


def test_a_skipped_page_leaves_its_runs_to_polls_of_their_own_and_the_listing_goes_on() -> None:
    s = listed(1000)
    s.plan(0.001)
    for offset in range(100, 1000, 100):
        s.page_read(offset, 1000, ids(offset, 100), 0.002)
    s.plan(1.0)  # the next listing: page 0 and every other page are targets
    assert s.listing
    assert s.page_read(0, 1000, ids(0, 100), 1.001)[1] == []
    jobs = s.plan(1.001).page_jobs
    assert jobs and jobs[0][0] == 100
    assert s.page_skipped(100, 1.2) == []  # not a failure: the others are still read
    assert s.listing_open
    in_flight = s._listing.in_flight if s._listing else -1
    assert (
        s.page_skipped(100, 1.2) == [] and s._listing and s._listing.in_flight == in_flight
    )  # twice: ignored
    assert s.listed("r00100")  # still in the listing, waiting for no page now
    rest = [offset for job in jobs for offset in job if offset != 100]
    unread: list[str] = []
    for offset in rest:
        _, unread = s.page_read(offset, 1000, ids(offset, 100), 1.3)
    assert not s.listing
    assert unread == ids(100, 100)  # the listing ended: page 100's runs go alone, at once
    assert set(s.plan(1.3).alone) == set(ids(100, 100))


def test_a_failed_page_closes_the_listing_to_its_jobs_other_pages() -> None:
    s = listed(1000)
    jobs = s.plan(0.001).page_jobs
    s.page_failed(0.002, offset=jobs[0][0])
    assert s.listing and not s.listing_open  # in flight until every page is answered or skipped
    for offset in [offset for job in jobs for offset in job][1:]:
        s.page_skipped(offset, 0.003)
    assert not s.listing


# --- the Poller's workers, on real threads ---------------------------------------------------


class _Listing:
    """A stand-in REST client whose ``list_training_runs_health`` answers ``runs`` healthy runs,
    recording which thread read which page; a page in ``fail`` raises."""

    def __init__(self, runs: int, fail: frozenset[int] = frozenset()) -> None:
        self.runs, self.fail = runs, fail
        self.reads: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        self.gates: dict[int, threading.Event] = {}  # a page waits for its event (at most 10 s)
        self.all_read = threading.Event()  # set once every page was read (or failed) once

    def list_training_runs_health(self, *, limit: int, offset: int, **_: Any) -> Any:
        from tinker_recovery.models import Cursor

        gate = self.gates.get(offset)
        if gate is not None:
            assert gate.wait(10), f"page {offset}: its gate never opened"
        with self.lock:
            self.reads.append((threading.current_thread().name, offset))
            if len({page for _, page in self.reads}) * 100 >= self.runs:
                self.all_read.set()
        if offset in self.fail:
            raise ConnectionError("the page is down")
        return ids(offset, min(limit, self.runs - offset)), [], Cursor(offset, limit, self.runs), 0

    def list_training_runs_brief(self, **_: Any) -> Any:
        raise AssertionError("a monitor reads pages by health")

    def get_training_run_brief(self, run_id: str, **_: Any) -> Any:
        from tinker_recovery.models import RunBrief

        return RunBrief(run_id, False)


class _Watching:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.listing_failed = threading.Event()  # a failed listing reported its unread runs

    def is_watched(self, run_id: str) -> bool:
        return True

    def corrupted(self, run_id: str, run: Any, report: bool) -> bool:
        return False

    def poll_failed(self, run_id: str, error: BaseException, reason: str) -> None:
        self.failed.append(run_id)  # (the loop reports a listing's unread runs in one go)
        self.listing_failed.set()

    def dropped(self, run_id: str, reason: str, error: BaseException) -> None:
        pass


def _poller(rest: Any, listener: Any) -> Any:
    from tinker_recovery._poller import Poller
    from tinker_recovery.clock import SystemClock
    from tinker_recovery.policy import Policy

    settings = PollSettings(interval_s=60.0, timeout_s=5.0, concurrency=16, mode="list", page_size=100)
    policy = Policy(enabled=True, jitter="none", poll_interval_ms=60_000)
    poller = Poller(settings, policy, listener, clock=SystemClock(), name="jobs", redact=lambda e: e)
    poller.rest = rest
    return poller


def _run_until(poller: Any, runs: int, event: threading.Event) -> None:
    """Watch ``runs`` runs, start the poller, wait (10 s at most) for ``event``, stop it."""
    for run_id in ids(0, runs):
        poller.add(run_id)
    poller.start()
    try:
        assert event.wait(10)
    finally:
        poller.stop(None)


@pytest.mark.timeout(30)
def test_a_worker_reads_its_jobs_pages_in_order() -> None:
    rest, listener = _Listing(2000), _Watching()
    poller = _poller(rest, listener)
    _run_until(poller, 2000, rest.all_read)  # one listing: the next is a minute away
    assert sorted(offset for _, offset in rest.reads) == list(range(0, 2000, 100))  # each page once
    by_thread: dict[str, list[int]] = {}
    for thread, offset in rest.reads:
        by_thread.setdefault(thread, []).append(offset)
    assert all(pages == sorted(pages) for pages in by_thread.values())
    assert max(len(pages) for pages in by_thread.values()) >= 3  # pages went in jobs, not one by one
    assert listener.failed == []


@pytest.mark.timeout(30)
def test_a_failed_page_skips_the_rest_of_its_job_and_its_runs_are_polled_alone() -> None:
    rest, listener = _Listing(2000, fail=frozenset({100})), _Watching()
    poller = _poller(rest, listener)
    _run_until(poller, 2000, listener.listing_failed)
    pages = [offset for _, offset in rest.reads]
    assert pages.count(100) == 1 and len(pages) == len(set(pages))  # no page asked twice
    unread = set(range(0, 2000, 100)) - set(pages)
    assert 200 in unread  # the failed page's job read none of its later pages
    assert set(listener.failed) == {run for offset in unread | {100} for run in ids(offset, 100)}


@pytest.mark.timeout(30)
def test_a_failed_page_stops_the_other_jobs_of_its_listing() -> None:
    rest, listener = _Listing(2000, fail=frozenset({100})), _Watching()
    poller = _poller(rest, listener)
    cancelled = threading.Event()
    cancel = poller._cancel_page_jobs

    def cancel_and_tell() -> None:
        cancel()
        if any(job.cancelled for job in poller._page_jobs):
            cancelled.set()

    poller._cancel_page_jobs = cancel_and_tell
    rest.gates[600] = cancelled  # the second job's first page answers once the jobs are cancelled
    _run_until(poller, 2000, listener.listing_failed)
    pages = {offset for _, offset in rest.reads}
    assert 600 in pages and not pages & {700, 800, 900, 1000}  # the rest of its job: not asked
    assert set(ids(700, 100)) <= set(listener.failed)  # left unread by the failed listing


# --- a late job, a Retry-After, a failing clock ----------------------------------------------


def test_a_page_handed_back_by_a_late_job_is_asked_again_first_and_alone() -> None:
    s = listed(2000, pages_per_job=3)
    plan = s.plan(0.001)
    assert plan.pages_late == 0.001 + 2 * PAGE_JOB_SHARE * 1.0  # twice a job's planned length
    assert plan.page_jobs[0] == (100, 200, 300)
    s.page_read(100, 2000, ids(100, 100), 0.05, started=0.001, round_trip_s=0.049)
    assert s.page_returned(200, 0.05) == [] and s.page_returned(300, 0.05) == []
    in_flight = s._listing.in_flight if s._listing else -1
    assert s.page_returned(300, 0.05) == []  # twice: ignored
    assert s._listing and s._listing.in_flight == in_flight and s._listing.returned == [200, 300]
    assert s.listed("r00200")  # still in the listing, waiting for no page now
    assert s.plan(0.05).page_jobs == ((200,),)  # the freed slot: ahead of the pages not asked yet, alone
    s.page_read(200, 2000, ids(200, 100), 0.051)
    assert s.plan(0.051).page_jobs == ((300,),)
    s.page_read(300, 2000, ids(300, 100), 0.052)
    assert s.plan(0.052).page_jobs == ((1300, 1400, 1500),)  # then the targets not asked yet


def test_jobs_are_sized_from_the_last_round_trip_when_it_is_longer() -> None:
    s = listed(10_000)  # page 0 in 1 ms: jobs of floor(0.02 / 0.001) = 20 pages, 4 at once
    first = s.plan(0.001).page_jobs[0]
    assert len(first) == 20
    for offset in first:  # the server slows down: its last page takes 8 ms
        rtt = 0.008 if offset == first[-1] else 0.001
        s.page_read(offset, 10_000, ids(offset, 100), 0.03, started=0.03 - rtt, round_trip_s=rtt)
    (job,) = s.plan(0.03).page_jobs  # the least round trip is still 1 ms
    assert len(job) == 2  # floor(0.02 / 0.008): a slower server's pages go in shorter jobs at once


def test_a_listing_past_its_budget_leaves_a_handed_back_pages_runs_to_polls_of_their_own() -> None:
    s = listed(1000, pages_per_job=3, timeout_s=0.1)
    jobs = s.plan(0.001).page_jobs
    for offset in [offset for job in jobs for offset in job if offset != 900]:
        s.page_read(offset, 1000, ids(offset, 100), 0.05)
    assert s.page_returned(900, 0.2) == ids(900, 100)  # the last page out, past the budget: ends it
    assert not s.listing


@pytest.mark.parametrize("page_concurrency", [1, 32])
def test_a_failed_pages_retry_after_holds_the_runs_its_job_did_not_read(page_concurrency: int) -> None:
    # found in review: the pages skipped after the failed one ended the listing without the delay,
    # and its unread runs were polled alone at once, right after the server asked to back off
    s = listed(500, page_concurrency=page_concurrency)
    plan = s.plan(0.001)
    s.page_failed(0.002, defer_s=10.0, offset=plan.page_jobs[0][0])
    unread: list[str] = []
    for job in plan.page_jobs:
        for offset in job:
            if offset != plan.page_jobs[0][0]:
                unread += s.page_skipped(offset, 0.002)
    assert not s.listing and len(unread) == 400
    assert s._runs["r00450"].next_due == 10.002 and not s._runs["r00450"].unlisted
    assert s.plan(0.003).alone == ()


class _ManualListing(_Listing):
    """Reading a page moves ``clock`` on by ``took[offset]`` seconds (a slow page), or the clock
    fails once when ``fail_clock`` is set."""

    def __init__(self, runs: int, clock: Any, took: dict[int, float]) -> None:
        super().__init__(runs)
        self.clock, self.took = clock, took

    def list_training_runs_health(self, *, limit: int, offset: int, **kwargs: Any) -> Any:
        self.clock.advance(self.took.get(offset, 0.001))
        return super().list_training_runs_health(limit=limit, offset=offset, **kwargs)


class _FailingClock:
    """A system clock whose ``monotonic`` raises once ``fail`` is set (an injected clock's bug)."""

    def __init__(self) -> None:
        from tinker_recovery.clock import SystemClock

        self.inner, self.fail = SystemClock(), False

    def monotonic(self) -> float:
        if self.fail:
            self.fail = False
            raise OSError("the clock failed")
        return self.inner.monotonic()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _by_hand(clock: Any, rest: Any, listener: Any, runs: int) -> Any:
    """A Poller (not started) whose plans and jobs this test runs on its own thread."""
    from tinker_recovery._poller import Poller
    from tinker_recovery.policy import Policy

    settings = PollSettings(interval_s=1.0, timeout_s=5.0, concurrency=16, mode="list", page_size=100)
    policy = Policy(enabled=True, jitter="none", poll_interval_ms=1000)
    poller = Poller(settings, policy, listener, clock=clock, name="hand", redact=lambda e: e)
    poller.rest = rest
    for run_id in ids(0, runs):
        poller._on_add(run_id)
    return poller


def _run_jobs(poller: Any) -> list[Any]:
    """Plan, run every page job on this thread, hand every outcome to the loop's handlers; until
    the listing ends. Return the page jobs run."""
    from tinker_recovery._poller import _PageJob

    ran: list[Any] = []
    while True:
        plan = poller._schedule.plan(poller._clock.monotonic())
        jobs = [_PageJob(offsets, plan.pages_until, plan.pages_late) for offsets in plan.page_jobs]
        for job in jobs:
            poller._jobs += 1
            poller._read_pages(job)
            ran.append(job)
        while poller._inbox:
            item = poller._inbox.popleft()
            getattr(poller, "_on_" + item[0])(*item[1:])
        if not poller._schedule.listing:
            return ran


def test_a_late_job_hands_its_other_pages_back_and_every_page_is_read_once() -> None:
    from tinker_recovery.clock import ManualClock

    clock = ManualClock()
    rest, listener = _ManualListing(1000, clock, took={100: 0.1}), _Watching()
    poller = _by_hand(clock, rest, listener, 1000)
    jobs = _run_jobs(poller)
    assert [job.offsets for job in jobs][:2] == [(0,), (100, 200, 300)]
    pages = [offset for _, offset in rest.reads]
    assert sorted(pages) == list(range(0, 1000, 100))  # each page once: 200 and 300 asked again
    assert pages.index(400) < pages.index(200)  # the other jobs went on meanwhile
    assert listener.failed == [] and not poller._schedule.plan(clock.monotonic()).alone


def test_a_worker_whose_clock_fails_reports_every_page_of_its_job() -> None:
    # found in review: the clock, read outside the page's try, failed the job with no page posted,
    # and the listing waited for its pages for ever
    clock = _FailingClock()
    rest, listener = _Listing(1000), _Watching()
    poller = _by_hand(clock, rest, listener, 1000)
    from tinker_recovery._poller import _PageJob

    plan = poller._schedule.plan(clock.monotonic())
    poller._read_pages(_PageJob(plan.page_jobs[0], plan.pages_until, plan.pages_late))
    poller._on_page_job_done(None)
    for item in list(poller._inbox):
        if item[0] != "page_job_done":
            getattr(poller, "_on_" + item[0])(*item[1:])
    poller._inbox.clear()
    plan = poller._schedule.plan(clock.monotonic())
    clock.fail = True
    poller._read_pages(_PageJob(plan.page_jobs[0], plan.pages_until, plan.pages_late))
    kinds = [item[0] for item in poller._inbox]
    assert kinds == ["page_error"] + ["page_skipped"] * (len(plan.page_jobs[0]) - 1) + ["page_job_done"]
    for item in list(poller._inbox):
        getattr(poller, "_on_" + item[0])(*item[1:])
    for job in plan.page_jobs[1:]:  # the other jobs, cancelled by the failure
        for offset in job:
            poller._on_page_skipped(offset)
    assert not poller._schedule.listing  # ended: its unread runs are polled alone
    assert len(listener.failed) == 900


def test_a_handed_back_pages_runs_keep_the_wake_no_later_than_their_due_time() -> None:
    # page_concurrency 4: the slots are the cap, so no page goes beyond them
    s = listed(1000, pages_per_job=3, page_concurrency=4)
    for job in s.plan(0.001).page_jobs:
        for offset in job:
            s.page_read(offset, 1000, ids(offset, 100), 0.002)
    s.plan(1.0)  # the next listing: page 0 first, then jobs of the others
    s.page_read(0, 1000, ids(0, 100), 1.001)
    job = s.plan(1.001).page_jobs[0]
    due = s._runs[f"r{job[1]:05d}"].next_due  # its page's due time, from the last listing
    s.page_read(job[0], 1000, ids(job[0], 100), 1.03, started=1.001, round_trip_s=0.029)
    s.page_returned(job[1], 1.03)
    s.page_returned(job[2], 1.03)
    # the freed slot takes the first page back; the other's runs are due at their page's time
    assert s.plan(1.03).page_jobs == ((job[1],),)
    assert s.next_wake(1.03) <= due + 0.05
    alone = set(s.plan(due + 0.05).alone)  # not asked again by then: polled alone (within the budget)
    assert alone and alone <= set(ids(job[2], 100))


def test_a_handed_back_page_read_again_in_time_leaves_no_early_wake_and_no_scan() -> None:
    # while it is handed back, the page's runs count among the pages not asked yet; once read
    # again, its old due time is gone: the loop neither wakes then nor scans every run (a scan
    # of 10,000 runs for nothing, after each page handed back, was a fifth of the monitor
    # thread's CPU in a listing at a fast server)
    s = listed(1000, pages_per_job=3)
    for job in s.plan(0.001).page_jobs:
        for offset in job:
            s.page_read(offset, 1000, ids(offset, 100), 0.002)
    s.plan(1.0)
    s.page_read(0, 1000, ids(0, 100), 1.001)
    job = s.plan(1.001).page_jobs[0]  # the other jobs stay in flight: the listing goes on
    old_due = s._runs[f"r{job[1]:05d}"].next_due
    s.page_read(job[0], 1000, ids(job[0], 100), 1.03, started=1.001, round_trip_s=0.029)
    s.page_returned(job[1], 1.03)
    s.page_returned(job[2], 1.03)
    assert s.next_wake(1.03) <= old_due  # handed back: its runs' due time wakes the loop
    # asked again at once, each alone: the second falls due within the slack, so it goes beyond
    # the slots (the cap has room) instead of leaving its runs to polls of their own
    assert s.plan(1.03).page_jobs == ((job[1],), (job[2],))
    for offset in job[1:]:  # read in time
        s.page_read(offset, 1000, ids(offset, 100), 1.031, started=1.03, round_trip_s=0.001)
    assert s._listing is not None
    assert s.next_wake(1.031) > old_due + 0.05  # read again: nothing is due at the old time
    assert s._none_due(old_due + 0.05)  # and a plan then starts nothing without a scan


def test_a_handed_back_page_falling_due_goes_beyond_the_slots_within_the_cap() -> None:
    # every slot busy: a page handed back waits for a free slot while its runs are not due, and
    # goes in a job of its own (beyond the slots, within the cap) once they fall due within the
    # slack, rather than each of its runs being polled alone (60 single-run reads at once in a
    # 10,000-run listing at a fast server, found by measuring)
    s = listed(1000, pages_per_job=3)  # 4 slots (MIN_PAGE_SLOTS), a cap of 12
    for job in s.plan(0.001).page_jobs:
        for offset in job:
            s.page_read(offset, 1000, ids(offset, 100), 0.002, started=0.001, round_trip_s=0.001)
    s.plan(1.0)
    s.page_read(0, 1000, ids(0, 100), 1.001, started=1.0, round_trip_s=0.001)
    jobs = s.plan(1.001).page_jobs
    assert jobs == ((100, 200, 300), (400, 500), (600, 700), (800, 900))
    s.page_read(100, 1000, ids(100, 100), 1.002, started=1.001, round_trip_s=0.001)
    s.page_returned(200, 1.002)
    s.page_returned(300, 1.002)  # its job ran late: the slot is free again
    due = s._page_due[300]  # 0.001 + 1 + slack 0.05 + two round trips: 1.053
    assert due == pytest.approx(1.053)
    assert s.plan(1.002).page_jobs == ((200,),)  # the free slot; 300 is not due within the slack
    assert s.next_wake(1.002) == pytest.approx(due - 0.05)  # every slot busy: wake when it falls due
    plan = s.plan(due - 0.05)
    assert plan.page_jobs == ((300,),) and plan.alone == ()  # beyond the slots: 5 jobs in flight
    assert len(s._listing.job_left) == 5
    for offset in (200, 300, 400, 500, 600, 700, 800, 900):
        s.page_read(offset, 1000, ids(offset, 100), due - 0.04)
    assert s._listing is None and s.plan(due + 0.1).alone == ()  # every run read by its page


def test_no_page_goes_beyond_the_cap() -> None:
    # the same with page_concurrency 4: the slots are the cap, so the page handed back waits for a
    # slot, and its runs are polled alone at their due time (as a page not asked in time)
    s = listed(1000, pages_per_job=3, page_concurrency=4)
    for job in s.plan(0.001).page_jobs:
        for offset in job:
            s.page_read(offset, 1000, ids(offset, 100), 0.002, started=0.001, round_trip_s=0.001)
    s.plan(1.0)
    s.page_read(0, 1000, ids(0, 100), 1.001, started=1.0, round_trip_s=0.001)
    s.plan(1.001)
    s.page_read(100, 1000, ids(100, 100), 1.002, started=1.001, round_trip_s=0.001)
    s.page_returned(200, 1.002)
    s.page_returned(300, 1.002)
    due = s._page_due[300]
    assert s.plan(1.002).page_jobs == ((200,),)
    assert s.next_wake(1.002) == pytest.approx(due)  # no room: woken when its runs fall due
    assert s.plan(due - 0.05).page_jobs == ()
    alone = set(s.plan(due).alone)  # (as many as the budget for polls of a run's own allows)
    assert alone and alone <= set(ids(300, 100))
