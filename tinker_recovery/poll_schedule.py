"""When each watched run is polled, and how: a pure schedule (no thread, no lock, no I/O).

Every method takes ``now`` (seconds on a monotonic clock). The Monitor thread is the only caller:
it asks ``plan(now)`` what to start, reports what ended (``finished``, ``page_read``,
``page_failed``) and sleeps until ``next_wake(now)``.

Rules (exact-number tests in tests/test_poll_schedule.py):

- A run is due ``interval_s`` after its last poll began; a new run, or one asked for by
  ``poll_now``, is due at once; ``poll_now`` during a poll of the run makes it due when that poll
  ends. Runs due within ``slack_s`` go along with the ones due now.
- Runs whose last poll timed out ("suspects") hold at most ``suspect_slots`` polls at once; the
  others wait (``Plan.waiting``) for a slot.
- A Retry-After (429/503) defers that run's next poll, or, on a listing, the next listing and the
  runs it left unread.
- While a listing is in flight its pages go first: polls of a run's own (a run unread
  ``interval_s`` into the listing, a new run, a ``poll_now``) are started only within a budget
  (``solo_budget``): at most ``concurrency`` minus the listing's page slots in flight at once,
  and at most ``concurrency`` started per interval (the window restarts one interval after its
  first start). The others keep waiting: for their page, for a slot, or for the next listing.
- The pages of a listing are read in jobs (``Plan.page_jobs``), ``page_slots`` jobs at a time, each
  job's pages one after the other: a target page and the targets after it (``pages_per_job``: the
  targets left shared among the free slots, each job about ``PAGE_JOB_SHARE`` of the interval at
  the least round trip, or the last page's when that is longer, at most ``pages_per_job`` of the
  settings), any other page alone. A page's due times and round trip count from when its request
  went out (``page_read``'s ``started``). A job running past twice its length hands the pages it
  has not started back (``page_returned``): they are asked again first, alone, and until then
  their runs count as on pages not asked yet (their pages' due times); one whose runs fall due
  within the slack goes at once, beyond the page slots (within their cap). A page its job did
  not start otherwise (the listing's budget, a failed page before it, a stopped listing) is
  ``page_skipped``. The runs of a page handed back or skipped wait for no answer from it.
  ``page_slots``: enough to read ``total_pages`` in half an interval at the least page round trip
  of this listing and the last one
  (``2 * pages * rtt / interval``, rounded up), at least ``MIN_PAGE_SLOTS``, at most
  ``page_concurrency`` and ``concurrency - suspect_slots`` (and at least 1). The least, not the
  last: a server busy with the pages already asked for answers each later, and sizing from that
  asked for more pages at once, up to the cap (32 at once from a local server that answers one
  in 1.6 ms, issue 16); a server whose answers really slow down shows it in the next listing. A
  listing still reading half an interval after it began sizes from the last round trip if that
  is longer: it is behind, and more pages at once is its way to finish before its time budget
  leaves its unread runs to polls of their own.
- List mode: one listing at a time, once per interval, covering every run not in a poll of its
  own. Its first page gives ``total_count``; then it asks the pages that held a watched run when
  last read (its targets), in offset order. A page that no longer returns runs it held has the
  pages before and after it asked next. Only when a run of the listing is on no known page (new,
  or gone from its page) does it ask the other pages too (at most ``max_pages`` pages in all,
  whatever the count says later), after the targets, each once, from where the last such listing
  stopped, until every such run is found (a run not found in as many pages as the account has,
  another owner's say, is no longer looked for: it is polled alone); when a page held watched
  runs, it starts none of these past half an interval, so it ends before the next listing is due
  (20 watched runs of a 30,000-run account sit on 20 of its 300 pages: reading all 300 every
  interval took the whole interval and left the watched pages late, issue 16). A listing when no
  page held a watched run, or one looking for more runs than there are other pages, reads every
  page in offset order. Pages are read ``page_concurrency`` at a time, none twice, and no page is
  started ``timeout_s`` after the listing began. A run the listing did not return (another owner's
  run, a deleted one, one on a page not reached, a listing cut short or failed) is polled alone at
  once. No run waits much more than an interval for a listing (issue 16): a run a listing read is
  due ``interval_s`` plus ``slack_s`` plus a lag allowance after its page was asked for (the
  allowance: how far into the listing that was, at most ``LAG_SHARE`` of the interval, at least
  two page round trips; a run polled alone during a listing gets the same); a run due when a
  listing starts (new, asked for by ``poll_now``, or due with the listing) is due ``interval_s``
  after the listing began, and no run in a listing later than that. A run in a listing is polled
  alone at its due time (the slack does not take it early) unless the page that read it last is
  being read then: it waits for that answer, and is polled alone if the page no longer holds it.
  So a listing about as fast as the last one asks for each run's page before it falls due, and a
  slower one (a 300-page account) leaves it to a poll of its own. While a listing is in flight,
  runs on pages it has not asked for are represented by their pages' due times: a tick does not
  look at every run. A new run is polled alone at once unless a listing starts now. A 404/405/501
  on a listing turns list mode into per-run for good.
- Auto mode: per-run until every watched run has been looked at once (so auto never costs more
  requests before its first look than per-run polls), unless ``AUTO_PROBE_RUNS`` or more runs are
  not looked at yet: then a listing makes the first look (one page more than per-run polls at
  worst, instead of a first pass of one poll per run). That first look is made once: runs watched
  later (a recovered run's successor, say) do not send auto back to per-run. Then, with two or more
  runs and the total unknown, one listing learns it; from then on it lists when the pages needed
  are fewer than the watched runs (a first page that shows otherwise ends that listing at once).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

import attrs

from .poll_settings import PollSettings

__all__ = [
    "Plan",
    "PollSchedule",
    "page_slots",
    "pages_for",
    "pages_per_job",
    "poll_jobs",
    "solo_budget",
    "split",
]

LAG_SHARE = 0.1
"""The most a listing may lag the last one reaching a run, as a share of the interval, before
the run is polled alone."""

MIN_PAGE_SLOTS = 4
"""A listing reads at least this many page jobs at once (when its caps allow). It keeps a listing's
pages asked at about the same moments from one listing to the next when one has more pages than
the other (one looking for a run reads hundreds, the next its targets only): with 1 or 2, the
simulations in tests/test_poll_schedule_sim.py left a run unread 1.40 s under churn (bound 1.19 s)
and polled runs alone. Fewer would cost less CPU at a fast server (one job at a time: about a
seventh less, its workers no longer handing the interpreter lock to each other, issue 16)."""

AUTO_MIN_RUNS = 2
"""``auto`` never lists for fewer watched runs than this."""

AUTO_PROBE_RUNS = 100
"""``auto`` lists before its first look at every run when this many runs are not looked at yet (10,000
runs at a 44 ms round trip take 7 s or more to poll once each with 64 workers; a listing reads them
in well under a second, or its first page shows at once that listing is not worth it)."""


def pages_for(total: int, page_size: int, max_pages: int) -> int:
    """Pages a listing reads for ``total`` runs: ``ceil(total / page_size)``, at least 1, at most
    ``max_pages``."""
    return max(1, min(max_pages, math.ceil(max(0, total) / page_size)))


JOB_SHARE = 0.25
"""One poll job (the runs one worker reads one after the other) takes at most about this share of
the interval at the measured round trip."""


def poll_jobs(runs: int, interval_s: float, round_trip_s: float) -> int:
    """How many poll jobs ``runs`` runs due together are split into: enough for each to read its
    runs in ``JOB_SHARE`` of ``interval_s`` at ``round_trip_s`` a run
    (``ceil(runs * rtt / (JOB_SHARE * interval))``), at least 1, at most ``runs``; 0 for no run.

    One job per worker means one wake-up of a worker for many polls: 100 runs answered in 1 ms go
    as one job, not 100 (issue 16); runs 44 ms away go five or six to a job at a 1 s interval.

    >>> poll_jobs(100, 1.0, 0.001), poll_jobs(1000, 1.0, 0.044), poll_jobs(10, 1.0, 0.5)
    (1, 176, 10)
    >>> poll_jobs(0, 1.0, 0.1)
    0
    """
    if runs <= 0:
        return 0
    return max(1, min(runs, math.ceil(runs * max(0.0, round_trip_s) / (JOB_SHARE * interval_s))))


def split(run_ids: Sequence[str], jobs: int) -> list[tuple[str, ...]]:
    """``run_ids`` in ``jobs`` consecutive parts whose sizes differ by at most one (none empty;
    fewer parts when there are fewer runs; ``jobs`` < 1 counts as 1).

    >>> split(["a", "b", "c", "d", "e"], 2)
    [('a', 'b', 'c'), ('d', 'e')]
    """
    count = max(1, min(jobs, len(run_ids)))
    size, extra = divmod(len(run_ids), count)
    parts, start = [], 0
    for index in range(count if run_ids else 0):
        end = start + size + (1 if index < extra else 0)
        parts.append(tuple(run_ids[start:end]))
        start = end
    return parts


def page_slots(pages: int, interval_s: float, round_trip_s: float, floor: int, cap: int) -> int:
    """Pages of one listing read at once: enough to read ``pages`` pages in half of
    ``interval_s`` at ``round_trip_s`` a page (``ceil(2 * pages * rtt / interval)``), at least
    ``floor``, at most ``cap`` (which wins over ``floor``), and at least 1.

    >>> page_slots(100, 1.0, 0.044, 4, 12), page_slots(100, 1.0, 0.001, 4, 12)
    (9, 4)
    >>> page_slots(3, 1.0, 0.5, 4, 2)
    2
    """
    busy = math.ceil(2 * max(0, pages) * max(0.0, round_trip_s) / interval_s)
    return max(1, min(cap, max(floor, busy)))


PAGE_JOB_SHARE = 0.02
"""One page job (the pages one worker reads one after the other) takes at most about this share of
the interval at the least page round trip measured."""


def pages_per_job(pages: int, jobs: int, interval_s: float, round_trip_s: float, cap: int) -> int:
    """Listing pages one job reads one after the other: the ``pages`` left to ask shared among
    ``jobs`` jobs (``ceil(pages / jobs)``), no more than one job reads in ``PAGE_JOB_SHARE`` of
    ``interval_s`` at ``round_trip_s`` a page (``floor(PAGE_JOB_SHARE * interval / rtt)``; no such
    bound for an rtt of 0, not measured yet), at most ``cap``, at least 1.

    A job of many pages wakes one worker once and the Monitor's thread once for all of them: at
    a fast server, a wake-up and a plan per page were a third of a 10,000-run listing's CPU
    (issue 16). A job stays short (20 ms at a 1 s interval), so each page of the next listing goes
    out at about the same moment into it as this one's: at a 44 ms round trip, where a wake-up a
    page costs little beside the wait, jobs of 5 pages shifted their later pages by up to 180 ms
    from one listing to the next and left a run unread for 1.18 s (issue 16's bound: 1 s + a
    round trip), so pages that slow go one to a job.

    >>> pages_per_job(99, 4, 1.0, 0.001, 25), pages_per_job(99, 9, 1.0, 0.044, 25)
    (20, 1)
    >>> pages_per_job(3, 4, 1.0, 0.001, 25), pages_per_job(0, 4, 1.0, 0.5, 25)
    (1, 1)
    >>> pages_per_job(99, 4, 1.0, 0.0, 10)
    10
    """
    share = math.ceil(max(0, pages) / max(1, jobs))
    if round_trip_s > 0:
        share = min(share, math.floor(PAGE_JOB_SHARE * interval_s / round_trip_s))
    return max(1, min(cap, share))


def solo_budget(
    concurrency: int, pages_in_flight: int, solo_in_flight: int, started_this_interval: int
) -> int:
    """Polls of a run's own that may start now while a listing is in flight: the workers the
    listing's pages do not use (``concurrency - pages_in_flight``, at least 1) less those already
    polling alone, and at most ``concurrency`` per interval less those already started; never
    negative.

    >>> solo_budget(16, 9, 0, 0), solo_budget(16, 9, 5, 0), solo_budget(16, 9, 0, 14)
    (7, 2, 2)
    >>> solo_budget(16, 20, 0, 0)
    1
    """
    slots = max(1, concurrency - pages_in_flight) - solo_in_flight
    return max(0, min(slots, concurrency - started_this_interval))


@attrs.define(weakref_slot=False)
class _Run:
    run_id: str  # its key in PollSchedule._runs (the same string object)
    next_due: float
    in_flight: bool = False  # a poll of its own
    in_listing: bool = False  # covered by the listing in flight, not read by it yet
    seen: bool = False  # looked at once (read, or a poll answered)
    urgent: bool = False  # poll_now during a poll: due again when it ends
    suspect: bool = False  # its last poll of its own timed out
    holds_slot: bool = False
    unlisted: bool = False  # the last listing left it unread: its next poll is one of its own
    page: int = -1  # the offset of the listing page that read it last (-1: none)
    sought_since: int = -1  # on no page: the count of pages looked through when that began (-1: on one)


@attrs.define(eq=False, weakref_slot=False)
class _PageRead:
    """A page's last answer, kept when every watched run on it was read in the common way (on this
    page the time before, looked at, not asked for meanwhile) and every other id on it was not
    watched. The same answer again reads the same runs the same way: ``page_read`` then sets their
    due times from this list instead of looking each id up (a look-up per run cost more than half
    of the monitor thread's CPU in a 10,000-run listing, its dict and strings out of the CPU's
    caches, issue 16).

    It is dropped as soon as one of its runs is no longer so: a run that leaves the page (polled
    alone, read by another page, left unread by a listing, forgotten: ``_leave_page``) or is asked
    for (``poll_now``), and every one when a run is watched (``add``). So while it is kept, each of
    its runs is on the page, looked at, not asked for, and in the listing once one has started
    since the page's last answer (a listing takes in every run not polled alone and not left
    unread): nothing is checked run by run (that check was a tenth of the monitor thread's CPU in
    a 10,000-run listing, issue 16)."""

    ids: list[str]  # the answer's run ids in order (a watched run's as its key)
    runs: list[_Run]  # the watched runs it read, in order
    read: list[str]  # their ids (keys); handed to the caller as is: not to be changed

    def answered_again(self, run_ids: Iterable[str], expected: int) -> bool:
        """True when ``run_ids`` is this answer again and its page holds ``expected`` watched
        runs (these)."""
        return len(self.runs) == expected and run_ids == self.ids


@attrs.frozen
class Plan:
    """What to start now: ``pages`` (listing page offsets to read) in ``page_jobs`` (each job's
    pages read one after the other, none started at or after ``pages_until``, and none but the
    first at or after ``pages_late``: those go back, ``page_returned``), ``alone`` (runs
    polled with a GET of their own), ``waiting`` (due suspects left for a free slot), and
    ``unread`` (runs a listing cut short by its time budget left unread; they are in ``alone`` or
    due). Plans compare by what they start, not by how the pages are grouped into jobs."""

    pages: tuple[int, ...] = ()
    page_jobs: tuple[tuple[int, ...], ...] = attrs.field(default=(), eq=False)
    pages_until: float = attrs.field(default=math.inf, eq=False)
    pages_late: float = attrs.field(default=math.inf, eq=False)
    alone: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    unread: tuple[str, ...] = ()


@attrs.define
class _Listing:
    started: float
    total_pages: int | None = None  # known once the first page is read (or from the last listing)
    # The pages asked first, ascending: page 0 and each page that held a watched run last time.
    targets: tuple[int, ...] = (0,)
    asked_targets: int = 0
    next_offset: float = 0  # the least target not asked yet (inf: all asked); pages below it are asked
    # Pages other than the targets, read after them when a run of the listing is on no known page
    # (new, or moved): how many are left to ask, and no such page is started at or after
    # ``discover_until``.
    discover: bool = False
    untargeted: bool = False  # no page held a watched run: it reads every page
    unplaced: int = 0  # runs of the listing on no known page not read yet: no page is looked through once 0
    discover_left: int = 0
    discover_until: float = math.inf
    hints: list[int] = attrs.field(factory=list)  # the pages next to one that lost runs: asked first
    returned: list[int] = attrs.field(factory=list)  # pages a late job handed back unasked: asked first
    defer_s: float | None = None  # a failed page's Retry-After: the listing's unread runs wait for it
    # runs on no page that a whole account's worth of pages looked through did not find (another
    # owner's, say): not looked for (each is polled alone), so they do not keep every listing reading
    given_up: set[str] = attrs.field(factory=set)
    asked: set[int] = attrs.field(factory=set)  # every page asked (none is asked twice)
    in_flight: int = 0  # pages asked and not answered (each in a job, read or waiting its turn)
    began: dict[int, float] = attrs.field(factory=dict)  # page offset -> when it was asked
    job_of: dict[int, int] = attrs.field(factory=dict)  # page offset -> its job (the job's first page)
    # job -> its pages not answered yet: the page jobs in flight (the pages read at once), at most
    # ``_page_slots``, or ``_page_cap`` with pages handed back falling due
    job_left: dict[int, int] = attrs.field(factory=dict)
    stopped: bool = False  # no more pages (failed, cut short, or not worth it)
    least_rtt: float = math.inf  # the least round trip of its pages read so far


class PollSchedule:
    """The poll schedule of one Monitor; see the module docstring for the rules."""

    def __init__(self, settings: PollSettings) -> None:
        self.settings = settings
        self._runs: dict[str, _Run] = {}
        self._next_listing = -math.inf
        self._listing: _Listing | None = None
        self._known_total: int | None = None
        self._list_available = True
        self._suspects_in_flight = 0
        self._waiting = False  # suspects are due but wait for a slot
        self._solo_in_flight = 0  # polls of a run's own in flight
        self._solo_window = -math.inf  # the start of the solo budget's interval
        self._solo_started = 0  # polls of a run's own started during a listing in that interval
        self._held_until: float | None = None  # due runs held back by the solo budget, until then
        self._page_rtt = 0.0  # the last listing page's round trip (started -> read), seconds
        self._least_rtt_before = math.inf  # the least page round trip of the last listing
        self._unseen = 0  # watched runs not looked at yet
        self._first_look = False  # auto: every run (two or more) was looked at once; never reset
        # Listing pages by offset: how many watched runs the last read of each returned, and when
        # they are due again (its ask time + interval + slack). Such a run ("on a page") keeps its
        # page's due time until something else sets it; while a listing is in flight, the runs on
        # pages not asked for yet are left out of the floor, and their pages' earliest due time
        # stands for them: a tick scans no run while the listing keeps pace (issue 16).
        self._page_runs: dict[int, int] = {}
        self._page_due: dict[int, float] = {}
        # The last answer of each page on which every watched run was read as it was the time
        # before (see ``_PageRead``): the same answer again is read without a look-up per run.
        self._page_reads: dict[int, _PageRead] = {}
        self._discover_at = 0  # where the next listing's pages beyond its targets begin (a cursor)
        self._looked_through = 0  # pages asked to find runs on no known page, ever
        self._unasked_due: tuple[list[int], list[float]] | None = None  # see ``_pages_due``
        # The earliest ``next_due`` of the runs not in a poll of their own: always a lower bound
        # (-inf: unknown), exact while ``_floor_exact``. ``plan`` and ``next_wake`` skip their scan
        # of every run when it shows nothing is due: a listing of 10,000 watched runs ticks once a
        # page, and two scans a tick were 2 ms, 11 us per listed run (issue 16). A run in a listing
        # counts with its due time plus the slack (it is taken at its due time, not ``slack_s``
        # before), so ``floor > now + slack_s`` still means nothing can be taken. While a listing is
        # in flight (each page it reads raises the due time of its runs, so the floor is seldom
        # exact) ``next_wake`` answers the bound less the slack: an early wake, once, whose ``plan``
        # scans.
        self._floor = -math.inf
        self._floor_exact = False

    def __repr__(self) -> str:
        return f"PollSchedule(runs={len(self._runs)}, mode={self.mode!r}, total={self._known_total})"

    # --- the watched set ------------------------------------------------------------------------

    def add(self, run_id: str, now: float) -> None:
        """Watch ``run_id``: due at once. Adding a watched run changes nothing."""
        if run_id not in self._runs:
            self._runs[run_id] = _Run(run_id, next_due=now)
            self._unseen += 1
            self._lower(now)
            self._page_reads.clear()  # a page's next answer may hold it: read each page in full

    def remove(self, run_id: str) -> None:
        """Forget ``run_id`` (frees its suspect slot); unknown ids are ignored."""
        run = self._runs.pop(run_id, None)
        if run is not None and run.in_listing and run.page < 0:
            self._not_sought(run_id)  # no longer looked for
        if run is not None:
            self._leave_page(run)
        if run is not None and not run.in_flight and run.next_due <= self._floor:
            self._floor_exact = False  # it may have been the earliest
        if run is not None and not run.seen:
            self._unseen -= 1
        if run is not None and run.holds_slot:
            self._suspects_in_flight -= 1
        if run is not None and run.in_flight:
            self._solo_in_flight -= 1
            if self._held_until is not None:
                self._floor = -math.inf  # a run held back by the solo budget may take its slot: scan

    def poll_now(self, run_id: str, now: float) -> bool:
        """Make ``run_id`` due at once, or right after its poll in flight; False if unknown."""
        run = self._runs.get(run_id)
        if run is None:
            return False
        if run.in_flight or run.in_listing:
            run.urgent = True
            if run.page >= 0:
                self._page_reads.pop(run.page, None)  # its page's next answer reads it id by id
        else:
            self._set_due(run, min(run.next_due, now))
        return True

    # --- the earliest due time (see __init__) -----------------------------------------------------

    def _lower(self, due: float) -> None:
        """A run not in flight is due at ``due`` (new, lowered, or back from its poll)."""
        if due < self._floor:
            self._floor = due

    def _set_due(self, run: _Run, due: float) -> None:
        """Set ``run.next_due``, keeping the floor a lower bound (and exact where it can); the run
        leaves its page (its due time is its own now)."""
        self._leave_page(run)
        if not run.in_flight:
            if due < run.next_due:
                self._lower(due + (self.settings.slack_s if run.in_listing else 0.0))
            elif due > run.next_due and run.next_due <= self._floor:
                self._floor_exact = False  # it may have been the earliest
        run.next_due = due

    def _lag_allowance(self, began: float) -> float:
        """How much later than this one the next listing may read a run read at ``began`` (a
        page's ask, or a poll of its own during this listing) before the run is polled alone: as
        long again as it took this listing to get there (a listing up to twice as slow), at most
        ``LAG_SHARE`` of the interval, at least two page round trips (a wave of pages behind). A
        listing that keeps pace, or nearly, never polls a run twice; one slower than the interval
        (a 30,000-run account) leaves a run unread for at most ``(1 + LAG_SHARE) * interval +
        slack`` (issue 16)."""
        listing = self._listing
        into = 0.0 if listing is None else max(0.0, began - listing.started)
        return max(2 * self._page_rtt, min(into, LAG_SHARE * self.settings.interval_s))

    def _leave_page(self, run: _Run) -> None:
        if run.page >= 0:
            self._page_reads.pop(run.page, None)  # its answer no longer reads the same runs
            left = self._page_runs.get(run.page, 1) - 1
            if left > 0:
                self._page_runs[run.page] = left
            else:
                self._page_runs.pop(run.page, None)
                self._page_due.pop(run.page, None)
                self._unasked_due = None
            run.page = -1

    def _pages_due(self) -> float:
        """The earliest due time of the runs on pages the listing in flight has not asked for, or
        that a late job handed back (math.inf: none, or no listing). Asked twice a tick, so kept
        as the suffix minima of the pages' due times in offset order (``_unasked_due``), rebuilt
        after a page's due time at or past the next offset changes: a page's answer changes only
        its own, already asked; the pages handed back (a few at most) are looked at each time."""
        listing = self._listing
        if listing is None:
            return math.inf
        if self._unasked_due is None:
            offsets = sorted(self._page_due)
            minima = [math.inf] * (len(offsets) + 1)
            for index in range(len(offsets) - 1, -1, -1):
                minima[index] = min(minima[index + 1], self._page_due[offsets[index]])
            self._unasked_due = (offsets, minima)
        offsets, minima = self._unasked_due
        return min(minima[bisect.bisect_left(offsets, listing.next_offset)], self._handed_back_due(listing))

    def _none_due(self, horizon: float) -> bool:
        """True when no run outside a poll of its own is due by ``horizon`` (no scan needed)."""
        return self._floor > horizon

    def _floor_wake(self, now: float) -> float | None:
        """The earliest due time when later than ``now`` (nothing due, so neither held nor waiting
        runs change it) and known exactly, or, while a listing is in flight, the earliest moment a
        run may be taken (the floor less the slack, see ``__init__``); None: scan."""
        if self._listing is not None:
            wake = self._floor - self.settings.slack_s
            return wake if wake > now and not self._waiting else None
        if self._floor > now and not self._waiting and self._floor_exact:
            return self._floor
        return None

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    @property
    def known_total(self) -> int | None:
        """The account's run count from the last listing, or None."""
        return self._known_total

    @property
    def listing(self) -> bool:
        """True while a listing is in flight."""
        return self._listing is not None

    @property
    def listing_open(self) -> bool:
        """True while a listing is in flight and may read more pages (not stopped: failed, cut
        short, or not worth it); a stopped one's page jobs need not read their other pages."""
        return self._listing is not None and not self._listing.stopped

    @property
    def mode(self) -> str:
        """The mode used now: ``"list"`` or ``"per_run"``."""
        mode = self.settings.mode
        if mode == "per_run" or not self._list_available:
            return "per_run"
        if mode == "list":
            return "list"
        if len(self._runs) < AUTO_MIN_RUNS:
            return "per_run"
        if not self._first_look:
            if 0 < self._unseen < AUTO_PROBE_RUNS:
                return "per_run"
            self._first_look = True  # latched: a run watched from now on is not a reason to stop listing
        if self._known_total is None:
            return "list"
        return "list" if self._pages(self._known_total) < len(self._runs) else "per_run"

    def _pages(self, total: int) -> int:
        return pages_for(total, self.settings.page_size, self.settings.max_pages)

    # --- planning -------------------------------------------------------------------------------

    def plan(self, now: float) -> Plan:
        """Start what is due at ``now``: marks the returned pages and runs as in flight."""
        horizon = now + self.settings.slack_s
        jobs: list[tuple[int, ...]] = []
        until = late = math.inf
        unread: list[str] = []
        if self.mode == "list" and self._listing is None and self._listing_due(horizon):
            self._start_listing(now)
        if self._listing is not None:
            jobs = self._next_pages(now)
            if jobs:
                until = self._job_until()
                late = now + 2 * PAGE_JOB_SHARE * self.settings.interval_s  # twice a job's length
            elif self._listing.in_flight == 0:
                unread = self._end_listing_if_done(now)  # cut short by its time budget: unread go alone
        pages = tuple(offset for job in jobs for offset in job)
        alone: list[str] = []
        waiting: list[str] = []
        free = self.settings.suspect_slots - self._suspects_in_flight
        budget = self._solo_budget(now)
        if self._none_due(horizon) and self._pages_due() > now:
            self._waiting = False  # (runs held back stay held: the floor holds their time)
            return Plan(
                pages=pages, page_jobs=tuple(jobs), pages_until=until, pages_late=late, unread=tuple(unread)
            )
        self._held_until = None
        floor = math.inf  # the earliest due time of the runs left out of a poll of their own
        reading = {} if self._listing is None else self._listing.began  # pages in flight
        unasked = math.inf if self._listing is None else self._listing.next_offset
        # pages handed back: as pages not asked yet, their runs count in their page's due time
        handed_back = () if self._listing is None else frozenset(self._listing.returned)
        due: list[tuple[str, _Run]] = []
        for run_id, run in self._runs.items():
            if run.in_flight:
                continue
            if run.in_listing:
                # no slack: the listing may yet read it in time; a run whose page is being read
                # waits for that answer (kept in the floor, which stays a lower bound); one on a
                # page not asked for yet counts in its page's due time, not in the floor
                if run.next_due > now or run.page in reading:
                    if run.page < unasked and run.page not in handed_back:
                        floor = min(floor, run.next_due + self.settings.slack_s)
                    continue
            elif run.next_due > horizon:
                floor = min(floor, run.next_due)
                continue
            due.append((run_id, run))
        if budget is not None and len(due) > budget:
            due.sort(key=lambda item: item[1].next_due)  # the longest due go first: none starves
        for run_id, run in due:
            if budget is not None and budget <= 0:
                # held: taken when a poll of a run's own ends (``finished`` asks for a scan) or
                # the next budget window opens (in the floor), not rescanned on every tick
                self._held_until = self._hold_until(now)
                floor = min(floor, self._held_until + self.settings.slack_s)  # taken then, not before
                continue
            if run.suspect:
                if free <= 0:
                    waiting.append(run_id)
                    floor = min(floor, run.next_due)
                    continue
                free -= 1
                run.holds_slot = True
                self._suspects_in_flight += 1
            if run.in_listing and run.page < 0:
                self._not_sought(run_id)  # polled alone: the listing need not look for it
            self._leave_page(run)
            run.in_flight = True
            run.in_listing = False
            run.unlisted = False
            run.urgent = False
            run.next_due = now + self.settings.interval_s
            if self._listing is not None:  # the next listing may reach it as late as this one did
                run.next_due += self._lag_allowance(now)
            self._solo_in_flight += 1
            if budget is not None:
                budget -= 1
                self._solo_started += 1
            alone.append(run_id)
        self._floor, self._floor_exact = floor, floor > -math.inf
        self._waiting = bool(waiting)
        return Plan(
            pages=pages,
            page_jobs=tuple(jobs),
            pages_until=until,
            pages_late=late,
            alone=tuple(alone),
            waiting=tuple(waiting),
            unread=tuple(unread),
        )

    def _solo_budget(self, now: float) -> int | None:
        """Polls of a run's own that may start now: None (no limit) unless a listing is in flight."""
        listing = self._listing
        if listing is None:
            return None
        if now >= self._solo_window + self.settings.interval_s:
            self._solo_window, self._solo_started = now, 0
        return solo_budget(
            self.settings.concurrency, self._page_slots(now), self._solo_in_flight, self._solo_started
        )

    def _hold_until(self, now: float) -> float:
        """When runs held back by the solo budget may go: at the next budget window if this one is
        spent; else (every slot busy) when a poll ends, which wakes the caller anyway."""
        if self._solo_started >= self.settings.concurrency:
            return self._solo_window + self.settings.interval_s
        return math.inf

    def _page_slots(self, now: float) -> int:
        listing = self._listing
        if listing is None or listing.total_pages is None:
            pages = 1
        else:  # the targets, and the pages beyond them it may yet ask
            pages = len(listing.targets) + listing.discover_left
        return page_slots(
            pages, self.settings.interval_s, self._sizing_rtt(now), MIN_PAGE_SLOTS, self._page_cap()
        )

    def _sizing_rtt(self, now: float) -> float:
        """The page round trip a listing is sized from (see the module docstring)."""
        listing = self._listing
        least = min(self._least_rtt_before, math.inf if listing is None else listing.least_rtt)
        rtt = self._page_rtt if least == math.inf else least
        if listing is not None and now - listing.started >= self.settings.interval_s / 2:
            rtt = max(rtt, self._page_rtt)  # behind its half interval: as the answers come now
        return rtt

    def _job_until(self) -> float:
        """No page of a job of this listing starts at or after this: the listing's time budget
        (``timeout_s`` after it began), as for a page asked alone. A page that hangs holds the
        pages after it in its job until then (a job is about ``PAGE_JOB_SHARE`` of the interval at
        the least round trip measured); a tighter cut-off was tried and, in a monitor busy taking up
        10,000 runs, cut jobs the busy interpreter had only slowed, and polled thousands of runs
        alone (issue 16)."""
        listing = self._listing
        assert listing is not None
        return listing.started + self.settings.timeout_s

    def _listing_due(self, horizon: float) -> bool:
        if not any(not run.in_flight and not run.unlisted for run in self._runs.values()):
            return False  # nothing a listing would read
        if self._next_listing <= horizon:
            return True
        if self._none_due(horizon):
            return False
        # read new (or urgent) runs by listing early when that costs fewer requests than alone
        new = sum(
            1
            for run in self._runs.values()
            if not run.in_flight and not run.unlisted and run.next_due <= horizon
        )
        pages = self._pages(self._known_total if self._known_total is not None else len(self._runs))
        return new > 0 and new >= pages

    def _start_listing(self, now: float) -> None:
        listing = self._listing = _Listing(started=now)
        self._next_listing = now + self.settings.interval_s
        listing.targets = tuple(sorted(self._page_runs.keys() | {0}))
        # a run due now (new, asked for, or due with the listing) gives the listing an interval;
        # one due later stays due then (a listing slower than an interval polls it alone one
        # interval after its last read); a page's due time changes as its runs' do
        last = now + self.settings.interval_s
        slack = self.settings.slack_s
        soon = now + slack
        self._page_due = {
            offset: last if due <= soon else min(due, last) for offset, due in self._page_due.items()
        }
        self._unasked_due = None
        floor = math.inf
        lap = math.inf if self._known_total is None else self._pages(self._known_total)
        for run in self._runs.values():  # once a listing: 10,000 runs cost about 0.7 ms here
            if run.in_flight:
                continue
            if not run.unlisted:
                run.in_listing = True
                if run.urgent:
                    run.urgent = False
                due = run.next_due
                if due <= soon or due > last:  # (one due between is kept: no write, the common case)
                    due = run.next_due = last
                if run.page < 0:
                    if run.sought_since < 0:
                        run.sought_since = self._looked_through
                    if self._looked_through - run.sought_since >= lap:
                        listing.given_up.add(run.run_id)
                    else:
                        listing.unplaced += 1
                    if due + slack < floor:
                        floor = due + slack
            elif run.next_due < floor:
                floor = run.next_due
        self._floor, self._floor_exact = floor, True
        listing.discover = listing.unplaced > 0
        listing.untargeted = not self._page_runs
        if listing.discover and not listing.untargeted:  # runs on known pages: read on time next listing
            listing.discover_until = now + self.settings.interval_s / 2

    def _plan_discovery(self, listing: _Listing) -> None:
        """Page 0 told the count: the listing looks for its runs on no known page. Fewer runs than
        pages to look through: after the targets, from the cursor, each page once (within half an
        interval if it has targets). More: every page in offset order, as a full listing (polling
        that many runs alone would cost more, and a run's page read late races its own due time)."""
        assert listing.total_pages is not None
        size = self.settings.page_size
        end = listing.total_pages * size
        others = listing.total_pages - sum(1 for page in listing.targets if page < end)
        if listing.unplaced > others:
            listing.targets = tuple(range(0, end, size))  # page 0 is asked (and read) already
            listing.next_offset = size
        else:
            listing.discover_left = others

    def _more_pages(self, listing: _Listing, now: float) -> bool:
        """True while ``listing`` has a page to ask (its time budget aside)."""
        if listing.returned:
            return True
        if listing.asked_targets < len(listing.targets):
            return listing.total_pages is not None or listing.asked_targets == 0
        if listing.unplaced > 0 and self._next_hint(listing) is not None:
            return True
        if listing.discover_left <= 0 or now >= listing.discover_until:
            return False
        # once every run it looks for is found, it stops, unless no page held a watched run (a
        # first listing, say, while runs are still being taken up): then it reads every page, as
        # its pages' answers are what places the runs taken up meanwhile next time
        return listing.unplaced > 0 or listing.untargeted

    def _not_sought(self, run_id: str) -> None:
        """A run of the listing on no known page is found, polled alone or forgotten."""
        listing = self._listing
        if listing is not None:
            if run_id in listing.given_up:
                listing.given_up.discard(run_id)
            else:
                listing.unplaced -= 1

    def _next_hint(self, listing: _Listing) -> int | None:
        """The first page next to one that lost runs not asked yet (dropping the others), or None."""
        if listing.total_pages is None:
            return None
        end = listing.total_pages * self.settings.page_size
        while listing.hints:
            offset = listing.hints[0]
            if 0 <= offset < end and offset not in listing.asked:
                return offset
            listing.hints.pop(0)
        return None

    def _next_page(self, listing: _Listing) -> int | None:
        """The next page to ask (``_more_pages`` said there is one): a target, else a page next to
        one that lost runs, else the discovery cursor's next page not asked yet (wrapping round to
        page 0); None when every page is asked. A page a late job handed back comes first."""
        size = self.settings.page_size
        if listing.returned:
            return listing.returned.pop(0)
        if listing.asked_targets < len(listing.targets):
            offset = listing.targets[listing.asked_targets]
            listing.asked_targets += 1
            more = listing.asked_targets < len(listing.targets)
            listing.next_offset = listing.targets[listing.asked_targets] if more else math.inf
            return offset
        assert listing.total_pages is not None
        hint = self._next_hint(listing) if listing.unplaced > 0 else None
        if hint is not None:  # a run gone from its page is most likely on the page before or after
            listing.hints.pop(0)
            self._looked_through += 1
            listing.discover_left = max(0, listing.discover_left - 1)  # one of the others (never a target)
            return hint
        end = listing.total_pages * size
        offset = self._discover_at if 0 <= self._discover_at < end else 0
        for _ in range(listing.total_pages):
            if offset not in listing.asked:
                break
            offset = offset + size if offset + size < end else 0
        else:
            listing.discover_left = 0  # every page is asked
            return None
        self._discover_at = offset + size
        self._looked_through += 1
        listing.discover_left -= 1
        return offset

    def _next_pages(self, now: float) -> list[tuple[int, ...]]:
        """The page jobs to start now, while fewer than ``_page_slots`` are in flight: a target
        page and the targets after it (``pages_per_job``: the targets left shared among the free
        slots), or one other page (a neighbour of a page that lost runs, a page looked through).
        A page handed back whose runs fall due within the slack goes at once, in a job of its own
        beyond the slots (within ``_page_cap``): one request rather than a poll of each of its runs
        alone (in a 10,000-run listing at a fast server, 60 runs at once, and the next listing
        looking for them on other pages, issue 16)."""
        listing = self._listing
        assert listing is not None
        if listing.stopped or now >= listing.started + self.settings.timeout_s:
            listing.stopped = True
            return []
        jobs: list[tuple[int, ...]] = []
        slots = self._page_slots(now)
        while self._more_pages(listing, now) and (
            len(listing.job_left) < slots or self._handed_back_falls_due(listing, now)
        ):
            targets_left = len(listing.targets) - listing.asked_targets
            offset = self._next_page(listing)
            if offset is None:
                break
            job = [offset]
            if (
                targets_left > len(listing.targets) - listing.asked_targets
                and listing.total_pages is not None
            ):
                size = pages_per_job(
                    targets_left,
                    slots - len(listing.job_left),
                    self.settings.interval_s,
                    max(self._sizing_rtt(now), self._page_rtt),  # (a slowing server: from its next answer)
                    self.settings.pages_per_job,
                )
                while len(job) < size and listing.asked_targets < len(listing.targets):
                    job.append(listing.targets[listing.asked_targets])
                    listing.asked_targets += 1
                more = listing.asked_targets < len(listing.targets)
                listing.next_offset = listing.targets[listing.asked_targets] if more else math.inf
            for page in job:
                listing.asked.add(page)
                listing.began[page] = now
                listing.job_of[page] = offset
            listing.in_flight += len(job)
            listing.job_left[offset] = len(job)
            jobs.append(tuple(job))
        return jobs

    def _handed_back_due(self, listing: _Listing) -> float:
        """The earliest due time of the runs on the pages ``listing`` has handed back (inf: none)."""
        return min((self._page_due.get(page, math.inf) for page in listing.returned), default=math.inf)

    def _handed_back_falls_due(self, listing: _Listing, now: float) -> bool:
        """A page handed back falls due within the slack and the cap leaves room for its job."""
        return (
            bool(listing.returned)
            and len(listing.job_left) < self._page_cap()
            and self._handed_back_due(listing) <= now + self.settings.slack_s
        )

    def _page_cap(self) -> int:
        """The most page jobs in flight at once (``page_slots``' cap)."""
        return min(
            self.settings.page_concurrency, max(1, self.settings.concurrency - self.settings.suspect_slots)
        )

    @staticmethod
    def _page_ended(listing: _Listing, offset: int) -> None:
        """The page at ``offset`` is answered, failed, handed back or skipped: its job ends (leaves
        ``job_left``) with its last page."""
        job = listing.job_of.pop(offset, None)
        if job is not None:
            left = listing.job_left.pop(job) - 1
            if left > 0:
                listing.job_left[job] = left

    # --- outcomes -------------------------------------------------------------------------------

    def finished(
        self, run_id: str, now: float, *, timed_out: bool = False, defer_s: float | None = None
    ) -> None:
        """A poll of ``run_id``'s own ended at ``now``. ``timed_out`` makes it a suspect;
        ``defer_s`` (a Retry-After) puts its next poll no sooner than ``now + defer_s``."""
        run = self._runs.get(run_id)
        if run is None:
            return
        was_in_flight = run.in_flight
        if was_in_flight and self._held_until is not None:
            self._floor = -math.inf  # a run held back by the solo budget may go now: scan
        if run.in_flight:
            self._solo_in_flight -= 1
        run.in_flight = False
        self._saw(run)
        run.suspect = timed_out
        if run.holds_slot:
            run.holds_slot = False
            self._suspects_in_flight -= 1
        due = run.next_due
        if run.urgent:
            run.urgent = False
            due = now
        if defer_s is not None:
            due = max(due, now + defer_s)
        if was_in_flight:  # back among the runs the floor covers
            run.next_due = due
            self._lower(due)
        else:
            self._set_due(run, due)

    def _saw(self, run: _Run) -> None:
        if not run.seen:
            run.seen = True
            self._unseen -= 1

    def page_read(
        self,
        offset: int,
        total: int,
        run_ids: Iterable[str],
        now: float,
        *,
        started: float | None = None,
        round_trip_s: float | None = None,
    ) -> tuple[list[str], list[str]]:
        """A listing page at ``offset`` answered with ``run_ids`` and ``total_count`` = ``total``.
        ``started``: when its request went out (None: when it was asked; a job's later pages go
        out after its earlier ones); ``round_trip_s``: how long it took (None: since it was asked).
        Return the watched runs it read (the caller judges each), and the runs the listing, if
        it ended now, left unread (polled alone from now)."""
        listing = self._listing
        began = now if listing is None else listing.began.get(offset, now)
        if started is not None and listing is not None and offset in listing.began:
            began = started
        # due again one interval after this page was asked for, plus the slack: the next listing
        # asks for it at about the same moment into it (then the run waits for that answer); one
        # asking later than that leaves the run to a poll of its own
        due = began + self.settings.interval_s + self.settings.slack_s + self._lag_allowance(began)
        expected = self._page_runs.get(offset, 0)  # runs this page held last time
        last = self._page_reads.pop(offset, None)
        if listing is not None and last is not None and last.answered_again(run_ids, expected):
            for run in last.runs:  # as last time: no look-up per run
                run.in_listing = False
                run.next_due = due
            read = last.read
            same = joined = expected
            self._page_reads[offset] = last
        else:
            read, same, joined = self._read_runs(offset, run_ids, due, now, expected, listing is not None)
        if read:
            self._floor_exact = False  # the floor may hold the due times these runs leave behind
        if same < expected:  # runs this page held and no longer returns: each on its own now
            lost = 0
            for run in self._runs.values():
                if run.page == offset and run.in_listing:
                    run.page = -1
                    lost += 1
            self._floor = -math.inf  # scan for them
            if lost and listing is not None:  # look for them on the pages next to it first
                listing.unplaced += lost
                size = self.settings.page_size
                near = (offset + size, offset - size)
                listing.hints += [page for page in near if page not in listing.targets]
        if joined:
            self._page_runs[offset], self._page_due[offset] = joined, due
            self._lower(due)  # back among the runs the floor covers
        else:
            self._page_runs.pop(offset, None)
            self._page_due.pop(offset, None)
        if listing is not None and offset >= listing.next_offset:  # (no listing: the next one rebuilds it)
            self._unasked_due = None
        if listing is None:
            return read, []
        listing.in_flight -= 1
        self._page_ended(listing, offset)
        if offset in listing.began:
            asked = listing.began.pop(offset)
            self._page_rtt = max(0.0, now - asked if round_trip_s is None else round_trip_s)
            listing.least_rtt = min(listing.least_rtt, self._page_rtt)
        if offset == 0:
            self._known_total = max(0, total)
            first = listing.total_pages is None
            listing.total_pages = self._pages(total)
            if first and listing.discover:
                self._plan_discovery(listing)
            if self.settings.mode == "auto" and listing.total_pages >= len(self._runs):
                listing.stopped = True  # listing costs more than polling each run
        return read, self._end_listing_if_done(now)

    def _read_runs(
        self, offset: int, run_ids: Iterable[str], due: float, now: float, expected: int, keep: bool
    ) -> tuple[list[str], int, int]:
        """Read the runs of the answer ``run_ids`` of the page at ``offset`` one by one: ``(read,
        same, joined)``, the watched runs it read (their keys), how many of them the page held
        last time, and how many are on it now. Keeps the answer as a ``_PageRead`` when ``keep``
        and every watched run on it was read in the common way and none of the ``expected`` it
        held last time is gone."""
        read: list[str] = []
        ids: list[str] | None = [] if keep else None  # the answer, while every run on it is as before
        runs: list[_Run] = []
        same = joined = 0
        find, answered = self._runs.get, read.append
        for run_id in run_ids:  # the hot loop of list mode when a page changed (issue 16)
            run = find(run_id)
            if run is None or not run.in_listing:
                if run is not None:
                    ids = None  # a watched run it does not read now (in a poll of its own)
                elif ids is not None:
                    ids.append(run_id)
                continue
            run.in_listing = False
            if run.page == offset and run.seen and not run.urgent:  # as last time: the common case
                run.next_due = due
                same += 1
                joined += 1
                answered(run.run_id)
                if ids is not None:
                    ids.append(run.run_id)
                    runs.append(run)
                continue
            ids = None
            if not run.seen:
                self._saw(run)
            if run.page < 0:
                self._not_sought(run_id)  # found
                run.sought_since = -1
            if run.page == offset:
                same += 1
            elif run.page >= 0:
                self._leave_page(run)  # moved here from another page
            if run.urgent:
                run.urgent, run.page, run.next_due = False, -1, now
                self._lower(now)
            else:
                run.page, run.next_due = offset, due
                joined += 1
            answered(run.run_id)
        if ids is not None and runs and same == expected:
            self._page_reads[offset] = _PageRead(read if len(ids) == len(read) else ids, runs, read)
        return read, same, joined

    def page_failed(
        self,
        now: float,
        *,
        unavailable: bool = False,
        defer_s: float | None = None,
        offset: int | None = None,
    ) -> list[str]:
        """A listing page failed at ``now``: no more pages; the runs it left unread are polled
        alone (at once, or after ``defer_s``, a Retry-After, which defers the next listing too).
        ``unavailable``: the backend has no list endpoint (404/405/501): per-run from now on.
        ``offset``: the failed page (its runs stop waiting for it; None: not known).
        Return the runs left unread if the listing ended now."""
        listing = self._listing
        if listing is None:
            return []
        listing.in_flight -= 1
        if offset is not None:
            self._page_ended(listing, offset)
            listing.began.pop(offset, None)  # its runs wait for no answer from it
        if offset is None or offset in self._page_runs:
            self._floor = -math.inf  # nor does their page's due time stand for them: scan for them
        listing.stopped = True
        if unavailable:
            self._list_available = False
        if defer_s is not None:
            listing.defer_s = defer_s if listing.defer_s is None else max(listing.defer_s, defer_s)
            self._next_listing = max(self._next_listing, now + defer_s)
            for run in self._runs.values():
                if run.in_listing:
                    self._set_due(run, now + defer_s)
        return self._end_listing_if_done(now, defer_s=defer_s)

    def page_returned(self, offset: int, now: float) -> list[str]:
        """A page of a job that ran late (``Plan.pages_late``), handed back at ``now`` before its
        request went out: asked again ahead of the pages not asked yet, alone (the first page of a
        job is never handed back, so each job reads one page at least); its runs wait for no answer
        meanwhile (one that falls due first is polled alone). A page not in flight is ignored.
        Return the runs left unread if the listing ended now (stopped, or past its time budget)."""
        listing = self._left_unread(offset)
        if listing is None:
            return []
        bisect.insort(listing.returned, offset)  # (it stays in ``asked``: no other way asks it)
        # its runs share their page's due time, counted among the pages not asked yet
        # (``_pages_due``): neither the floor nor a scan takes them (read again before then, a
        # page handed back left the floor low and cost a scan of every run, issue 16)
        return self._end_listing_if_done(now)

    def page_skipped(self, offset: int, now: float) -> list[str]:
        """A page of a job that stopped before asking it at ``now`` (its job fell behind its
        ``pages_until``, or the listing stopped): its runs wait for no answer from it, and are polled
        alone at their due times (or when the listing ends). Not a failure: the listing goes on.
        A page not in flight is ignored. Return the runs left unread if the listing ended now."""
        if self._left_unread(offset) is None:
            return []
        if offset in self._page_runs:
            self._floor = -math.inf  # nor does their page's due time stand for them: scan for them
        return self._end_listing_if_done(now)

    def _left_unread(self, offset: int) -> _Listing | None:
        """The page at ``offset`` leaves flight unread (handed back or skipped): the listing that
        had it in flight, or None when none had."""
        listing = self._listing
        if listing is None or offset not in listing.began:
            return None
        listing.in_flight -= 1
        self._page_ended(listing, offset)
        del listing.began[offset]
        return listing

    def _end_listing_if_done(self, now: float, defer_s: float | None = None) -> list[str]:
        listing = self._listing
        assert listing is not None
        if listing.in_flight > 0:
            return []
        if defer_s is None:
            defer_s = listing.defer_s  # a failed page's Retry-After, whichever outcome ends it
        if (
            not listing.stopped
            and listing.total_pages is not None
            and self._more_pages(listing, now)
            and now < listing.started + self.settings.timeout_s
        ):
            return []  # more pages to start
        self._listing = None
        if listing.least_rtt < math.inf:
            self._least_rtt_before = listing.least_rtt
        self._held_until = None  # runs held back by the solo budget: no budget any more
        unread = []
        floor = math.inf  # exact again (the scan is here anyway): the next tick need not scan
        for run_id, run in self._runs.items():
            if run.in_listing:  # not in the pages read: poll it alone (after a Retry-After: list again)
                run.in_listing = False
                run.urgent = False
                run.unlisted = defer_s is None
                self._set_due(run, now if defer_s is None else now + defer_s)
                unread.append(run_id)
            if not run.in_flight and run.next_due < floor:
                floor = run.next_due
        self._floor, self._floor_exact = floor, True
        return unread

    # --- waking ---------------------------------------------------------------------------------

    def next_wake(self, now: float) -> float:
        """When ``plan`` must be called again (``math.inf``: only after an outcome or a command).

        Suspects waiting for a slot do not count: the poll that frees a slot wakes the caller."""
        wake = math.inf
        if self._listing is not None:
            listing = self._listing
            if not listing.stopped and listing.total_pages is not None and self._more_pages(listing, now):
                if len(listing.job_left) < self._page_slots(now):
                    wake = now
                elif listing.returned and len(listing.job_left) < self._page_cap():
                    # every slot busy: a page handed back goes on its own when it falls due
                    wake = self._handed_back_due(listing) - self.settings.slack_s
        elif self.mode == "list" and any(not r.in_flight and not r.unlisted for r in self._runs.values()):
            wake = self._next_listing  # only when a listing would read something: no spinning
        earliest = self._floor_wake(now)
        if earliest is not None:
            pages_due = self._pages_due()
            if pages_due <= now and self._held_until is not None:
                # the due runs on pages not asked for yet were held back by the solo budget (the
                # last plan scanned them): they go when it allows, as in the scan below, not in a
                # spin of plans that hold them again
                pages_due = self._held_until
            return min(wake, earliest, pages_due)
        held = self._held_until if self._listing is not None else None
        reading = {} if self._listing is None else self._listing.began
        for run in self._runs.values():
            if run.in_flight or (run.suspect and self._waiting) or (run.in_listing and run.page in reading):
                continue
            due = run.next_due
            if held is not None and due <= now:
                due = held  # held back by the solo budget: an outcome or the next window wakes
            wake = min(wake, due)
        return wake

    def suspect(self, run_id: str) -> bool:
        """True when the last poll of ``run_id``'s own timed out (it is polled in a job of its own)."""
        run = self._runs.get(run_id)
        return run is not None and run.suspect

    def busy(self, run_id: str) -> bool:
        """True while a poll of ``run_id``'s own is in flight."""
        run = self._runs.get(run_id)
        return run is not None and run.in_flight

    def listed(self, run_id: str) -> bool:
        """True while the listing in flight has yet to read ``run_id``."""
        run = self._runs.get(run_id)
        return run is not None and run.in_listing

    def due_now(self) -> list[str]:
        """Runs not in a poll of their own (what ``poll_once`` asks for)."""
        return [run_id for run_id, run in self._runs.items() if not run.in_flight]
