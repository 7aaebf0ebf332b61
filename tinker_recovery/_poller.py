"""The Monitor's poll loop: one owner thread for the poll schedule and every run's state.

The thread named after the monitor (``tinker_recovery.monitor``) alone owns the ``PollSchedule``
and each run's ``RunState``. Poll workers (``<name>.poll-N``) only do the HTTP requests and post
what they got back; public calls post commands. The thread turns each outcome into a verdict
through the pure rules and tells its ``PollListener`` (the Monitor) what happened: a run read
corrupted, a poll failed in a way worth reporting, a run dropped.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from ._checks import check_seconds
from ._text import escape_text
from ._threads import Workers, remaining
from .errors import ApiError, RequestTimeout
from .models import RunBrief, TrainingRun, ids_and_corrupted
from .poll_schedule import PollSchedule, poll_jobs, split
from .run_state import LIST_UNAVAILABLE_STATUSES, RunState, Verdict, read_healthy

if TYPE_CHECKING:
    from .clock import Clock
    from .policy import Policy
    from .poll_settings import PollSettings
    from .rest import RestClient

__all__ = ["Observed", "PollListener", "Poller"]

Observed = TrainingRun | RunBrief
"""What a poll reads of a run: a full TrainingRun (its own GET) or a listing's RunBrief."""

log = logging.getLogger("tinker_recovery.monitor")

_HEALTHY_READ = RunBrief("", False)
"""What a listing read of a healthy run is judged with (only ``corrupted`` is looked at)."""


def cheap_reader(rest: Any, cheap: str, full: str) -> str:
    """The name of the reader to poll ``rest`` with: ``cheap`` (a RestClient's brief readers read
    only a run's id, ``corrupted`` and last checkpoint), unless ``rest`` lacks it or changes
    ``full`` where ``cheap`` would not see it: set on the instance, or overridden in a class below
    the one defining ``cheap`` (a RestClient subclass that changes what ``get_training_run``
    answers, e.g. to inject a corruption, keeps seeing every poll); then ``full``."""
    own = getattr(rest, "__dict__", {})
    if full in own or cheap in own:
        return full if full in own else cheap
    owners: dict[str, type] = {}
    for klass in type(rest).__mro__:
        for name in (cheap, full):
            if name in vars(klass):
                owners.setdefault(name, klass)
    cheap_owner, full_owner = owners.get(cheap), owners.get(full)
    if cheap_owner is not None and (full_owner is None or issubclass(cheap_owner, full_owner)):
        return cheap
    return full


PageReader = Callable[[Any, int, "PollSettings"], tuple[list[str], list[Observed], int]]
"""Reads the listing page at an offset: ``(run_ids, corrupted runs, total_count)``."""


def _page_by_health(rest: Any, offset: int, settings: PollSettings) -> tuple[list[str], list[Observed], int]:
    run_ids, corrupted, cursor, _skipped = rest.list_training_runs_health(
        limit=settings.page_size, offset=offset, timeout_s=settings.timeout_s, max_retries=0
    )
    return run_ids, corrupted, cursor.total_count


def _page_by_briefs(rest: Any, offset: int, settings: PollSettings) -> tuple[list[str], list[Observed], int]:
    briefs, cursor, _skipped = rest.list_training_runs_brief(
        limit=settings.page_size, offset=offset, timeout_s=settings.timeout_s, max_retries=0
    )
    run_ids, corrupted = ids_and_corrupted(briefs)
    return run_ids, corrupted, cursor.total_count


def _page_by_runs(rest: Any, offset: int, settings: PollSettings) -> tuple[list[str], list[Observed], int]:
    runs, cursor = rest.list_training_runs(
        limit=settings.page_size, offset=offset, timeout_s=settings.timeout_s, max_retries=0
    )
    run_ids, corrupted = ids_and_corrupted(runs)
    return run_ids, corrupted, cursor.total_count


def page_reader(rest: Any) -> PageReader:
    """How to read a listing page of ``rest``: by health (``list_training_runs_health``: ids, and
    whole items only for corrupted runs), by briefs, or by full runs, the cheapest that sees what
    ``rest`` answers (``cheap_reader``: a stand-in or a subclass that overrides a fuller reader is
    read through it)."""
    brief, health = "list_training_runs_brief", "list_training_runs_health"
    if cheap_reader(rest, brief, "list_training_runs") != brief:
        return _page_by_runs
    return _page_by_health if cheap_reader(rest, health, brief) == health else _page_by_briefs


class PollListener(Protocol):
    """What the poll loop tells (the Monitor); called on the poll loop's thread, so each call
    must return at once (hand slow work, and signals, to other threads)."""

    def is_watched(self, run_id: str) -> bool:
        """Is ``run_id`` still watched (not stopped, dropped or handed over)?"""
        ...

    def corrupted(self, run_id: str, run: Observed, report: bool) -> bool:
        """``run_id`` read corrupted (``report``: first time since it read healthy); True when the
        run leaves the poll loop (handed over)."""
        ...

    def poll_failed(self, run_id: str, error: BaseException, reason: str) -> None:
        """A poll of ``run_id`` failed in a way worth reporting (``reason`` says how)."""
        ...

    def dropped(self, run_id: str, reason: str, error: BaseException) -> None:
        """``run_id`` left the poll loop on its own (e.g. repeated 404s)."""
        ...


@attrs.define(eq=False)
class _PageJob:
    """Listing pages one worker reads one after the other (``Plan.page_jobs``); none is started
    at or after ``until`` (on the injected clock), nor once ``cancelled`` (set by the loop's thread
    when the listing stops: a failed page, say); none but the first at or after ``late`` (handed
    back to the schedule)."""

    offsets: tuple[int, ...]
    until: float
    late: float
    cancelled: bool = False


@attrs.define(eq=False)
class _Once:
    """A ``poll_once`` call waiting for one fresh outcome of each run (owned by the loop's thread)."""

    pending: dict[str, int] = attrs.field(factory=dict)  # outcomes still to see per run
    count: int = 0
    done: threading.Event = attrs.field(factory=threading.Event)


class Poller:
    """Polls the runs it is given on ``settings``, on one owner thread plus a pool of workers.

    ``rest`` is read by the workers for every request: set it before the first ``add``.
    ``redact`` turns an error into what may reach signals and logs (no key, no request objects).
    """

    def __init__(
        self,
        settings: PollSettings,
        policy: Policy,
        listener: PollListener,
        *,
        clock: Clock,
        name: str,
        redact: Callable[[BaseException], BaseException],
    ) -> None:
        self.settings, self._policy, self._listener = settings, policy, listener
        self._clock, self._name, self._redact = clock, name, redact
        self.rest: RestClient | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._workers = Workers(f"{name}.poll")
        # owned by the loop's thread:
        self._schedule = PollSchedule(settings)
        self._states: dict[str, RunState] = {}
        self._states_by_page: dict[int, tuple[list[str], list[RunState]]] = {}  # see _page_states
        self._onces: list[_Once] = []
        self._round_trip_s = 0.01  # a guess until the first answers: 100 runs go in 4 jobs at first
        self._jobs = 0  # poll jobs submitted and not ended: the pool grows to this (within the cap)
        self._page_jobs: set[_PageJob] = set()  # page jobs submitted and not ended
        self._list_warned = False
        self._listing_error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the loop's thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, deadline: float | None) -> None:
        """Stop the loop and its workers, waiting for them until ``deadline`` (a
        ``time.monotonic()`` value; None: for ever). Waiting ``poll_once`` calls return; polls that
        ended before the workers stopped are still reported."""
        self._stopped = True
        thread = self._thread
        self._post("stop")
        if thread is not None and thread is not threading.current_thread():
            thread.join(remaining(deadline))
        for once in [*self._onces, *(item[1] for item in list(self._inbox) if item[0] == "once")]:
            once.done.set()
        self._workers.shutdown(deadline)
        if thread is not None and not thread.is_alive():  # the state is ours now: report what polls ended
            for item in list(self._inbox):
                if item[0] == "error":
                    self._on_error(*item[1:])

    # --- commands (any thread) --------------------------------------------------------------------

    def add(self, run_id: str) -> None:
        self._post("add", run_id)

    def remove(self, run_id: str) -> None:
        self._post("remove", run_id)

    def poll_now(self, run_id: str) -> None:
        self._post("poll_now", run_id)

    def check(self, run_id: str) -> bool:
        """One GET of ``run_id`` on the calling thread; a corrupted answer goes to the loop as a
        confirmed one (no confirmation polls). Raises the REST client's errors, ValueError without
        REST access."""
        rest = self.rest
        if rest is None:
            raise ValueError("Monitor needs REST access to check runs: pass config= or rest=")
        run = rest.get_training_run(run_id, timeout_s=self.settings.timeout_s, max_retries=0)
        if run.corrupted:
            self._post("checked", run_id, run)
        return bool(run.corrupted)

    def poll_once(self, timeout: float | None) -> int:
        """Poll every run now; wait for a fresh answer of each (up to ``timeout`` seconds); return
        how many runs. Returns early when ``stop`` runs meanwhile; raises TimeoutError."""
        if timeout is not None:
            check_seconds("timeout", timeout)
        once = _Once()
        self._post("once", once)  # the loop's thread adopts it
        if self._stopped:
            once.done.set()
        if not once.done.wait(timeout):
            raise TimeoutError(f"poll_once: answers still missing after {timeout} s")
        return once.count

    def _post(self, *item: Any) -> None:
        self._inbox.append(item)
        self._wake.set()

    # --- the loop's thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            while self._inbox:
                item = self._inbox.popleft()
                if item[0] == "stop":
                    return
                try:
                    getattr(self, "_on_" + item[0])(*item[1:])
                except Exception:
                    log.error("monitor: handling %s failed; going on", item[0], exc_info=True)
            try:
                now = self._clock.monotonic()
                self._dispatch(now)
                wake_at = self._schedule.next_wake(now)
            except Exception:
                log.error("monitor tick failed; going on", exc_info=True)
                wake_at = self._clock.monotonic() + self.settings.interval_s
            if not self._inbox:
                delay = None if wake_at == math.inf else min(max(0.0, wake_at - now), threading.TIMEOUT_MAX)
                try:
                    self._clock.wait(self._wake, delay)
                except Exception:  # an injected clock that fails must not kill the thread
                    log.error("monitor: the clock's wait failed; going on", exc_info=True)
                    self._wake.wait(1.0)

    def _dispatch(self, now: float) -> None:
        """Start what the schedule says: its page jobs; the runs polled alone in
        ``poll_jobs`` jobs (a run whose last poll timed out in a job of its own, so a run that hangs
        delays no other). The pool grows to the jobs in flight, within ``concurrency``: threads
        that would only wait are never started."""
        plan = self._schedule.plan(now)
        if not plan.alone and not plan.pages:
            return
        suspects = [run_id for run_id in plan.alone if self._schedule.suspect(run_id)]
        others = [r for r in plan.alone if not self._schedule.suspect(r)] if suspects else plan.alone
        batches = split(others, poll_jobs(len(others), self.settings.interval_s, self._round_trip_s))
        page_jobs = [_PageJob(offsets, plan.pages_until, plan.pages_late) for offsets in plan.page_jobs]
        self._page_jobs.update(page_jobs)
        jobs: list[tuple[Callable[..., None], Any]] = [(self._read_pages, job) for job in page_jobs]
        jobs += [(self._read_runs, (run_id,)) for run_id in suspects]
        jobs += [(self._read_runs, batch) for batch in batches]
        self._workers.grow(min(self.settings.concurrency, self._jobs + len(jobs)))
        for job, argument in jobs:
            self._workers.submit(job, argument)
            self._jobs += 1

    # --- poll workers: I/O only -----------------------------------------------------------------

    def _read_runs(self, run_ids: tuple[str, ...]) -> None:
        """Read each run in turn. A healthy answer is queued without waking the loop's thread; a
        corrupted one, a failure and the job's end wake it: one wake-up for a job of healthy runs."""
        rest, clock = self.rest, self._clock
        assert rest is not None  # the Monitor sets it before the first run is added
        read = getattr(rest, cheap_reader(rest, "get_training_run_brief", "get_training_run"))
        try:
            for run_id in run_ids:
                if self._stopped:
                    break
                began = clock.monotonic()  # the round trips size the jobs: on the injected clock
                try:
                    run = read(run_id, timeout_s=self.settings.timeout_s, max_retries=0)
                    corrupted = bool(run.corrupted)  # a stand-in's odd answer fails here, as a poll
                except BaseException as error:
                    self._post("error", run_id, self._redact(error), clock.monotonic() - began)
                else:
                    self._inbox.append(("read", run_id, run, clock.monotonic() - began))
                    if corrupted:
                        self._wake.set()
        finally:
            self._post("job_done")

    def _read_pages(self, job: _PageJob) -> None:
        """Read the listing pages of ``job`` in turn, the cheapest way ``rest`` allows
        (``page_reader``), and post each one's run ids and corrupted runs. A page of healthy runs
        is queued without waking the loop's thread; one with a corrupted run, a failure and the
        job's end wake it: one wake-up for a job of healthy pages. Every page of the job is posted
        once, whatever happens: read, failed (anything raised while reading it, the clock's
        failures included), handed back (past ``job.late``, not the first), or skipped (after a
        failure, past ``job.until``, once cancelled, or once the poller stops)."""
        rest, clock, offsets = self.rest, self._clock, job.offsets
        posted = 0  # pages of the job posted
        try:
            assert rest is not None  # the Monitor sets it before the first run is added
            read = page_reader(rest)
            for offset in offsets:
                began = clock.monotonic()
                if self._stopped or job.cancelled or began >= job.until:
                    break
                if posted and began >= job.late:  # behind: the other pages go back to the schedule
                    self._inbox.extend(("page_returned", page) for page in offsets[posted:])
                    posted = len(offsets)
                    break
                run_ids, corrupted, total = read(rest, offset, self.settings)
                answer = ("page", offset, run_ids, corrupted, total, began, clock.monotonic() - began)
                self._inbox.append(answer)
                posted += 1
                if corrupted:
                    self._wake.set()
        except BaseException as error:
            self._inbox.append(("page_error", offsets[posted], self._redact(error)))
            posted += 1
        finally:
            self._inbox.extend(("page_skipped", page) for page in offsets[posted:])
            self._post("page_job_done", job)

    # --- outcomes and commands (the loop's thread) ------------------------------------------------

    def _on_job_done(self) -> None:
        self._jobs -= 1

    def _on_page_job_done(self, job: _PageJob) -> None:
        self._jobs -= 1
        self._page_jobs.discard(job)

    def _cancel_page_jobs(self) -> None:
        """The listing stopped (a page failed; the only stop while pages are in flight: a first
        page that stops it is read alone): page jobs in flight start none of their other pages."""
        if self._page_jobs and not self._schedule.listing_open:
            for job in self._page_jobs:
                job.cancelled = True

    def _on_add(self, run_id: str) -> None:
        if self._listener.is_watched(run_id) and run_id not in self._schedule:
            self._schedule.add(run_id, self._clock.monotonic())
            self._states[run_id] = RunState(self._policy.confirm_polls, self._policy.max_poll_errors)

    def _on_remove(self, run_id: str) -> None:
        if not self._listener.is_watched(run_id):  # unless watched again meanwhile
            self._forget(run_id)

    def _forget(self, run_id: str) -> None:
        self._schedule.remove(run_id)
        self._states.pop(run_id, None)
        self._answered(run_id, fresh=False)

    def _on_poll_now(self, run_id: str) -> None:
        self._schedule.poll_now(run_id, self._clock.monotonic())

    def _on_once(self, once: _Once) -> None:
        now = self._clock.monotonic()
        self._onces.append(once)
        for run_id in self._states:
            if self._schedule.busy(run_id):  # its poll began before the call: poll again after it
                once.pending[run_id] = 2
                self._schedule.poll_now(run_id, now)
            elif self._schedule.listed(run_id):  # the listing in flight reads it: that answer counts
                once.pending[run_id] = 1
            else:
                once.pending[run_id] = 1
                self._schedule.poll_now(run_id, now)
        once.count = len(once.pending)
        if not once.pending:
            self._finish_once(once)

    def _answered(self, run_id: str, *, fresh: bool = True) -> None:
        if not self._onces:
            return
        for once in list(self._onces):
            left = once.pending.get(run_id)
            if left is None:
                continue
            if left <= 1 or not fresh:
                del once.pending[run_id]
                if not once.pending:
                    self._finish_once(once)
            else:
                once.pending[run_id] = left - 1

    def _finish_once(self, once: _Once) -> None:
        once.done.set()
        if once in self._onces:
            self._onces.remove(once)

    def _on_read(self, run_id: str, run: Observed, round_trip_s: float) -> None:
        self._round_trip_s = 0.8 * self._round_trip_s + 0.2 * round_trip_s
        if run_id in self._schedule:
            self._schedule.finished(run_id, self._clock.monotonic())
            self._judge(run_id, run)

    def _on_checked(self, run_id: str, run: TrainingRun) -> None:
        if run_id in self._schedule:
            self._judge(run_id, run, confirmed=True)

    def _on_error(self, run_id: str, error: BaseException, round_trip_s: float) -> None:
        if run_id not in self._schedule:
            return
        outcome = self._states[run_id].failed(
            error, interval_s=self.settings.interval_s, retry_after_s=getattr(error, "retry_after_s", None)
        )
        self._schedule.finished(
            run_id,
            self._clock.monotonic(),
            timed_out=isinstance(error, RequestTimeout),
            defer_s=outcome.defer_s,
        )
        self._answered(run_id)
        if not self._listener.is_watched(run_id):
            return
        if not isinstance(error, Exception):
            log.error("run %s: poll raised %s; treated as a poll error", run_id, type(error).__name__)
        if outcome.verdict is Verdict.DROPPED:
            self._forget(run_id)
            self._listener.dropped(run_id, outcome.reason, error)
        elif outcome.report:
            log.warning("run %s: %s (%s)", run_id, outcome.reason, escape_text(error, 300))
            self._listener.poll_failed(run_id, error, outcome.reason)
        else:
            log.debug("run %s: %s (%s), reported before", run_id, outcome.reason, escape_text(error, 300))

    def _on_page(
        self,
        offset: int,
        run_ids: list[str],
        corrupted: list[Observed],
        total: int,
        began: float,
        round_trip_s: float,
    ) -> None:
        read, unread = self._schedule.page_read(
            offset, total, run_ids, self._clock.monotonic(), started=began, round_trip_s=round_trip_s
        )
        if corrupted or self._onces:
            flagged = {run.training_run_id: run for run in corrupted}
            for run_id in read:
                self._judge(run_id, flagged.get(run_id, _HEALTHY_READ))
        else:  # every run healthy and no poll_once waits (the hot path): the states only
            read_healthy(self._page_states(offset, read))
        self._listing_ended(unread)

    def _page_states(self, offset: int, read: list[str]) -> list[RunState]:
        """The states of the runs ``read`` (the page at ``offset`` read them), kept while the
        schedule hands back the same list for that page: it does so only while the page reads
        the same runs, none watched anew meanwhile (``PollSchedule.page_read``), so no look-up
        per run (issue 16)."""
        if not read:  # (a page that holds no watched run keeps nothing)
            self._states_by_page.pop(offset, None)
            return []
        kept = self._states_by_page.get(offset)
        if kept is None or kept[0] is not read:
            kept = self._states_by_page[offset] = (read, [self._states[run_id] for run_id in read])
        return kept[1]

    def _on_page_skipped(self, offset: int) -> None:
        self._listing_ended(self._schedule.page_skipped(offset, self._clock.monotonic()))

    def _on_page_returned(self, offset: int) -> None:
        self._listing_ended(self._schedule.page_returned(offset, self._clock.monotonic()))

    def _on_page_error(self, offset: int, error: BaseException) -> None:
        status = error.status_code if isinstance(error, ApiError) else None
        unavailable = status in LIST_UNAVAILABLE_STATUSES
        if unavailable and not self._list_warned:
            self._list_warned = True
            log.warning(
                "listing training runs answered HTTP %s: no list endpoint; polling each run from now on",
                status,
            )
        elif not unavailable:
            log.warning(
                "listing training runs failed at offset %d (%s); polling each run this cycle",
                offset,
                escape_text(error, 300),
            )
        if not unavailable:
            self._listing_error = error
        self._listing_ended(
            self._schedule.page_failed(
                self._clock.monotonic(),
                unavailable=unavailable,
                defer_s=getattr(error, "retry_after_s", None),
                offset=offset,
            )
        )
        self._cancel_page_jobs()

    def _listing_ended(self, unread: list[str]) -> None:
        """Runs a listing left unread are polled alone now (and answer then); after a failed
        listing each gets one ``poll_failed`` (never counted towards dropping it)."""
        if self._schedule.listing or self._listing_error is None:
            return  # pages still in flight: the listing has not ended
        error, self._listing_error = self._listing_error, None
        reason = f"listing failed: {type(error).__name__}"
        for run_id in unread:
            if self._listener.is_watched(run_id):
                self._listener.poll_failed(run_id, error, reason)

    def _judge(self, run_id: str, run: Observed, *, confirmed: bool = False) -> None:
        outcome = self._states[run_id].read(bool(run.corrupted), confirmed=confirmed)
        self._answered(run_id)
        if outcome.verdict is Verdict.CORRUPTED and self._listener.corrupted(run_id, run, outcome.report):
            self._forget(run_id)
