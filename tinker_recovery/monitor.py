"""The Monitor: polls watched runs on a background thread and hands corrupted ones to an Executor."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from . import signals
from ._ids import check_run_id
from .clock import Clock, SystemClock
from .config import Config
from .errors import AlreadyPending, NoExecutor, NotFound, RecoveryDisabled, RequestTimeout, Shutdown
from .executor import Executor
from .service import check_service
from .journal import Journal, lineage_heads, read_journal
from .models import TrainingRun
from .policy import Policy
from .handle import RunHandle
from .recovery import Recovery
from .rest import RestClient

__all__ = ["Monitor", "POLL_MODES"]

log = logging.getLogger("tinker_recovery.monitor")

POLL_MODES = ("auto", "per_run", "list")
_AUTO_PROBE_AT = 20  # with the run count unknown, "auto" tries listing from this many watched runs
_SLACK_S = 0.05  # runs due this soon are polled along with the ones due now (at most 1/20 interval)


@attrs.define(eq=False)
class _Watch:
    """One watched run and what the monitor remembers of its recent polls."""

    run_id: str
    service: Any
    metadata: dict[str, Any]
    handle: RunHandle
    next_due: float
    in_flight: bool = False
    polled: bool = False  # a poll of it has begun at least once
    urgent: bool = False  # poll_now() asked for a poll while one was in flight
    suspect: bool = False  # its last poll of its own timed out
    holds_suspect_slot: bool = False  # polled now as a suspect, counted in _suspects_in_flight
    corrupted_streak: int = 0
    not_found_streak: int = 0


class Monitor:
    """Polls each watched run every ``policy.poll_interval_ms`` and recovers the corrupted ones.

    - ``executor``: where corrupted runs go; without one, ``monitor_run`` raises NoExecutor.
    - ``policy``: else ``config.recovery``; recovery must be enabled for ``monitor_run``.
    - ``config`` / ``rest``: REST access for polling (a RestClient is built from ``config``
      unless ``rest`` is given).
    - ``poll_concurrency``: polls in flight at once, so one slow run never delays the others;
      runs whose last poll timed out share at most a quarter of them (at least one).
    - ``poll_timeout_s``: the time-out of one poll; None: the smaller of the config's time-out
      and the poll interval (at least 1 s). Polls are not retried: the next poll is the retry.
    - ``poll_mode``: ``"per_run"`` (one GET per run), ``"list"`` (pages of ``list_training_runs``,
      ``list_page_size`` runs each, one listing per interval) or ``"auto"`` (whichever costs fewer
      requests).
    - ``journal``: a path; every signal of this monitor and its executor is appended as a JSON line,
      and a monitor started on an existing journal watches again the runs it lists, with
      ``service`` (required then) as their service.
    - ``clock``: injectable time source (see ``ManualClock``).
    """

    def __init__(
        self,
        executor: Executor | None,
        policy: Policy | None = None,
        config: Config | None = None,
        rest: RestClient | None = None,
        *,
        service: Any = None,
        journal: str | None = None,
        clock: Clock | None = None,
        poll_concurrency: int = 16,
        poll_timeout_s: float | None = None,
        poll_mode: str = "auto",
        list_page_size: int = 100,
        name: str = "tinker_recovery.monitor",
    ) -> None:
        if policy is None and config is not None:
            policy = config.recovery
        self.policy = policy if policy is not None else Policy()
        if not isinstance(self.policy, Policy):
            raise TypeError(f"policy: expected a Policy, got {type(self.policy).__name__}")
        if poll_mode not in POLL_MODES:
            raise ValueError(f"poll_mode: expected one of {', '.join(POLL_MODES)}, got {poll_mode!r}")
        for field, value in (("poll_concurrency", poll_concurrency), ("list_page_size", list_page_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field}: expected an int >= 1, got {value!r}")
        if poll_timeout_s is not None and poll_timeout_s <= 0:
            raise ValueError(f"poll_timeout_s: must be positive, got {poll_timeout_s!r}")
        self.executor = executor
        self.config = config
        self._owns_rest = rest is None and config is not None
        self._rest = rest if rest is not None else (RestClient(config, pool_size=poll_concurrency) if config else None)
        self._service = service
        self._journal_path = journal
        self._journal: Journal | None = None
        self._clock = clock or SystemClock()
        self._interval_s = self.policy.poll_interval_ms / 1000.0
        if poll_timeout_s is None:
            rest_timeout_s = self._rest.config.timeout_s if isinstance(self._rest, RestClient) else 30.0
            poll_timeout_s = min(rest_timeout_s, max(self._interval_s, 1.0))
        self._poll_timeout_s = poll_timeout_s
        self.poll_mode = poll_mode
        self._page_size = list_page_size
        self._known_total: int | None = None
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=poll_concurrency, thread_name_prefix=f"{name}.poll")
        self._lock = threading.Condition()
        self._watches: dict[str, _Watch] = {}
        self._handles: dict[str, RunHandle] = {}
        self._in_flight = 0
        self._listings = 0  # listings in flight (list mode)
        self._next_listing = -math.inf  # when the next listing is due (list mode)
        self._suspect_limit = max(1, poll_concurrency // 4)
        self._suspects_in_flight = 0
        self._deferred = False  # some suspect runs are due but wait for a slot
        self._wake_at = math.inf  # when the monitor thread plans to look again
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._receivers: list[Any] = []

    def __repr__(self) -> str:
        with self._lock:
            return f"Monitor(watching={len(self._watches)}, poll_mode={self.poll_mode!r}, stopped={self._stopping})"

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Monitor:
        """Start polling (and resume the journal's runs); calling it again does nothing."""
        with self._lock:
            if self._stopping:
                raise Shutdown("Monitor: cannot start after stop")
            if self._thread is not None:
                return self
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        if self._journal_path is not None:
            self._open_journal()
        self._thread.start()
        return self

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling and wait up to ``timeout`` seconds (None: no limit) for polls in flight.

        Safe to call twice. Recoveries already handed to the executor go on; shut it down too.
        """
        deadline = None if timeout is None else self._clock.monotonic() + timeout
        with self._lock:
            first = not self._stopping
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(self._remaining(deadline))
        with self._lock:
            drained = self._lock.wait_for(lambda: self._in_flight == 0, self._remaining(deadline))
        self._pool.shutdown(wait=drained, cancel_futures=True)
        if first:
            for signal, receiver in self._receivers:
                signal.disconnect(receiver)
            if self._journal is not None:
                self._journal.close()
            if self._owns_rest and self._rest is not None:
                self._rest.close()

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - self._clock.monotonic())

    # --- watching -------------------------------------------------------------------------------

    def monitor_run(self, run_id: str, service: Any, metadata: Mapping[str, Any] | None = None) -> RunHandle:
        """Watch ``run_id``; return the handle a training loop reads the current client from.

        ``service`` creates the restored client; ``metadata["training_client"]`` is the current one.
        Raises RecoveryDisabled (policy not enabled), NoExecutor, ValueError (bad run id, or no
        REST access), and Shutdown after ``stop``.
        """
        check_run_id(run_id)
        if not self.policy.enabled:
            raise RecoveryDisabled(f"monitoring {run_id} refused: the policy is not enabled (Policy(enabled=True))")
        if self.executor is None:
            raise NoExecutor(f"monitoring {run_id} refused: the monitor has no executor")
        if self._rest is None:
            raise ValueError("Monitor needs REST access to poll runs: pass config= or rest=")
        check_service(service)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping or None, got {type(metadata).__name__}")
        metadata = dict(metadata or {})
        handle = RunHandle(run_id, metadata.get("training_client"), stop=self.stop_monitoring, poll=self.poll_now)
        self._watch(run_id, service, metadata, handle, reason="monitor_run")
        return handle

    def _watch(self, run_id: str, service: Any, metadata: dict[str, Any], handle: RunHandle, reason: str) -> None:
        with self._lock:
            if self._stopping:
                raise Shutdown(f"monitoring {run_id} refused: the monitor is stopped")
            self._watches[run_id] = _Watch(run_id, service, metadata, handle, next_due=self._clock.monotonic())
            self._handles[run_id] = handle
        self._record("watch", run_id, reason=reason)
        self._wake.set()

    def _current_id(self, run_id: str) -> str:
        """The id its lineage is watched under now, for a current or original run id (lock held)."""
        handle = self._handles.get(run_id)
        return handle.run_id if handle is not None else run_id

    def stop_monitoring(self, run_id: str) -> bool:
        """Stop watching ``run_id`` (its current or original id); True if it was watched."""
        with self._lock:
            handle = self._handles.get(run_id)
            current = self._current_id(run_id)
            watch = self._watches.pop(current, None)
        if watch is None and (handle is None or not handle.watching):
            return False
        (handle or watch.handle)._stopped()  # a recovery in flight is then not followed
        self._record("unwatch", current, reason="stop_monitoring")
        return True

    def poll_now(self, run_id: str) -> bool:
        """Poll ``run_id`` (its current or original id) at once on a poll worker, or right after
        the poll in flight, without waiting for the answer; False if it is not watched."""
        with self._lock:
            watch = self._watches.get(self._current_id(run_id))
            if watch is None or self._stopping:
                return False
            if watch.in_flight:  # that poll may have read the run before the change: poll again after it
                watch.urgent = True
                watch.next_due = self._clock.monotonic()
                return True
            self._begin([watch], listing=False)
        self._launch([], [watch])
        return True

    @property
    def watched(self) -> list[str]:
        """The run ids being polled."""
        with self._lock:
            return list(self._watches)

    def handle(self, run_id: str) -> RunHandle | None:
        """The handle of a run watched now or before (by its original or current id), or None."""
        with self._lock:
            return self._handles.get(run_id)

    # --- polling --------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._stopping:
                return
            try:
                delay = self._dispatch_due()
            except Exception:
                log.error("monitor tick failed; going on", exc_info=True)
                delay = self._interval_s
            self._clock.wait(self._wake, delay)

    def poll_once(self, timeout: float | None = None) -> int:
        """Poll every watched run now, wait for the answers (up to ``timeout``); return how many.

        Raises TimeoutError if some answers are still missing after ``timeout`` seconds.
        """
        with self._lock:
            due = [w for w in self._watches.values() if not w.in_flight]
            if not due:
                return 0
            listing = self._mode_for(len(self._watches)) == "list"
            self._begin(due, listing=listing)
        self._launch(due if listing else [], [] if listing else due)
        with self._lock:
            if not self._lock.wait_for(lambda: not any(w.in_flight for w in due), timeout):
                raise TimeoutError(f"poll_once: answers still missing after {timeout} s")
        return len(due)

    def _dispatch_due(self) -> float | None:
        """Start the polls that are due; return the seconds until the next one is (None: no runs).

        Per run, a run is due ``poll_interval_ms`` after its last poll began; runs due within the
        next ``_SLACK_S`` go along, so a thousand runs cost a few wake-ups, not a thousand. Runs
        whose last poll timed out may hold at most a quarter of the poll workers (see _admit). In
        list mode one listing at a time reads every run, once per interval; a newly watched run is
        read at once (after the listing in flight, if any): alone, unless listing early costs
        fewer requests.
        """
        now = self._clock.monotonic()
        horizon = now + min(_SLACK_S, self._interval_s / 20)
        with self._lock:
            idle = [w for w in self._watches.values() if not w.in_flight]
            if self._mode_for(len(self._watches)) == "list":
                listing, alone = self._plan_listing(idle, horizon)
            else:
                listing, alone = [], [w for w in idle if w.next_due <= horizon]
            alone = self._admit(alone)
            self._begin(listing, listing=True)
            self._begin(alone, listing=False)
        self._launch(listing, alone)
        with self._lock:
            wake_at = self._next_wake()
            self._wake_at = wake_at
        if wake_at == math.inf:
            return None
        return max(0.0, wake_at - self._clock.monotonic())

    def _plan_listing(self, idle: list[_Watch], horizon: float) -> tuple[list[_Watch], list[_Watch]]:
        """List mode (lock held): the runs to read by listing now, and the new runs to read alone."""
        if self._listings:  # one listing at a time; runs watched meanwhile wait for its end
            return [], []
        new = [w for w in idle if not w.polled or w.urgent]
        pages = math.ceil((self._known_total or len(self._watches)) / self._page_size)
        if self._next_listing <= horizon or len(new) >= max(1, pages):
            return idle, []
        return [], new

    def _admit(self, due: list[_Watch]) -> list[_Watch]:
        """Cap the runs whose last poll timed out at a quarter of the poll workers (lock held).

        Without the cap, runs that hang until the poll time-out would hold every worker and the
        healthy runs would queue behind them. A run left out stays due and goes when a slot frees.
        """
        free = self._suspect_limit - self._suspects_in_flight
        admitted = []
        self._deferred = False
        for watch in due:
            if watch.suspect:
                if free <= 0:
                    self._deferred = True
                    continue
                free -= 1
            admitted.append(watch)
        return admitted

    def _begin(self, watches: list[_Watch], *, listing: bool) -> None:
        """Mark polls as started (lock held)."""
        if not watches:
            return
        now = self._clock.monotonic()
        for watch in watches:
            watch.in_flight = True
            watch.polled = True
            watch.urgent = False
            watch.next_due = now + self._interval_s
            if watch.suspect and not listing:
                watch.holds_suspect_slot = True
                self._suspects_in_flight += 1
        self._in_flight += len(watches)
        if listing:
            self._listings += 1
            self._next_listing = now + self._interval_s

    def _next_wake(self) -> float:
        """When the monitor thread must look again (lock held); math.inf: only when woken."""
        if not self._watches:
            return math.inf
        if self._mode_for(len(self._watches)) == "list":
            if self._listings or all(w.in_flight for w in self._watches.values()):
                return math.inf  # the listing, or the last poll, wakes the thread when it ends
            return self._next_listing
        waiting = [w.next_due for w in self._watches.values()
                   if not w.in_flight and not (self._deferred and w.suspect)]
        return min(waiting, default=math.inf)

    def _launch(self, listing: list[_Watch], alone: list[_Watch]) -> None:
        if listing:
            self._submit(self._poll_by_listing, listing, listing=True)
        for watch in alone:
            self._submit(self._poll_one, [watch])

    def _submit(self, job: Any, watches: list[_Watch], *, listing: bool = False) -> None:
        try:
            self._pool.submit(self._guarded, job, watches, listing)
        except RuntimeError:  # stopped: the pool takes no more work
            self._finished(watches, listing=listing)

    def _guarded(self, job: Any, watches: list[_Watch], listing: bool) -> None:
        handed_over: list[_Watch] = []
        try:
            handed_over = job(watches) or []
        except Exception:
            log.error("poll job crashed; going on", exc_info=True)
        finally:
            passed = {id(watch) for watch in handed_over}
            self._finished([w for w in watches if id(w) not in passed], listing=listing)

    def _finished(self, watches: list[_Watch], *, listing: bool = False) -> None:
        with self._lock:
            wake = listing or (self._deferred and any(w.holds_suspect_slot for w in watches))
            for watch in watches:
                watch.in_flight = False
                if watch.holds_suspect_slot:
                    watch.holds_suspect_slot = False
                    self._suspects_in_flight -= 1
                wake = wake or watch.next_due < self._wake_at
            self._in_flight -= len(watches)
            if listing:
                self._listings -= 1
            self._lock.notify_all()
        if wake:
            self._wake.set()

    def _mode_for(self, watched: int) -> str:
        if self.poll_mode != "auto":
            return self.poll_mode
        if self._known_total is None:
            return "list" if watched >= _AUTO_PROBE_AT else "per_run"
        return "list" if math.ceil(self._known_total / self._page_size) < watched else "per_run"

    def _poll_one(self, watches: list[_Watch]) -> None:
        (watch,) = watches
        try:
            run = self._rest.get_training_run(watch.run_id, timeout_s=self._poll_timeout_s, max_retries=0)
        except Exception as error:
            watch.suspect = isinstance(error, RequestTimeout)
            self._poll_failed(watch, error)
        else:
            watch.suspect = False
            self._observe(watch, run)

    def _poll_by_listing(self, watches: list[_Watch]) -> list[_Watch]:
        """Read the runs from pages of ``list_training_runs``; hand the ones missing from them
        (another owner's runs, or deleted) to polls of their own, and return those."""
        wanted = {watch.run_id: watch for watch in watches}
        offset = 0
        try:
            while wanted:
                runs, cursor = self._rest.list_training_runs(
                    limit=self._page_size, offset=offset, timeout_s=self._poll_timeout_s, max_retries=0
                )
                self._known_total = cursor.total_count
                for run in runs:
                    watch = wanted.pop(run.training_run_id, None)
                    if watch is not None:
                        self._observe(watch, run)
                offset += len(runs)
                if not runs or offset >= cursor.total_count:
                    break
        except Exception as error:
            for watch in wanted.values():
                self._poll_failed(watch, error)
            return []
        missing = list(wanted.values())
        for watch in missing:
            self._submit(self._poll_one, [watch])
        return missing

    def _payload(self, watch: _Watch, **extra: Any) -> dict[str, Any]:
        return {
            "run_id": watch.run_id,
            "attempt": 0,
            "strategy": self.policy.strategy_name,
            "metadata": watch.metadata,
            **extra,
        }

    def _poll_failed(self, watch: _Watch, error: BaseException) -> None:
        """A poll error never counts as corruption; enough 404s in a row drop the run."""
        with self._lock:
            watch.not_found_streak = watch.not_found_streak + 1 if isinstance(error, NotFound) else 0
            drop = watch.not_found_streak >= self.policy.max_poll_errors and self._watches.get(watch.run_id) is watch
            if drop:
                del self._watches[watch.run_id]
        if drop:
            reason = f"dropped from monitoring: not found for {watch.not_found_streak} consecutive polls"
            log.warning("run %s %s", watch.run_id, reason)
            watch.handle._stopped()
            self._record("unwatch", watch.run_id, reason=reason)
        else:
            reason = f"poll failed: {type(error).__name__}"
            log.warning("run %s: %s (%s)", watch.run_id, reason, error)
        signals.send_guarded(signals.poll_error, self, **self._payload(watch, error=error, reason=reason))

    def _observe(self, watch: _Watch, run: TrainingRun) -> None:
        with self._lock:
            watch.not_found_streak = 0
            if not run.corrupted:
                watch.corrupted_streak = 0
                return
            watch.corrupted_streak += 1
            if watch.corrupted_streak < self.policy.confirm_polls or self._watches.get(watch.run_id) is not watch:
                return
            del self._watches[watch.run_id]
        signals.send_guarded(signals.detected, self, **self._payload(watch, checkpoint=run.last_checkpoint))
        watch.handle._began()
        try:
            future = self.executor.recover(  # type: ignore[union-attr]
                watch.run_id, watch.service, self.policy, metadata=watch.metadata,
                last_checkpoint=run.last_checkpoint, run=run,
                config=None if self.executor._has_rest() else self.config,  # type: ignore[union-attr]
            )
        except (AlreadyPending, Shutdown) as error:
            log.warning("run %s read corrupted but was not handed over: %s", watch.run_id, error)
            watch.handle._failed(error)
            return
        future.add_done_callback(lambda done: self._recovery_done(watch, done))

    def _recovery_done(self, watch: _Watch, future: Future) -> None:
        """Follow the recovered run with the same service and handle; or mark the handle failed."""
        error = future.exception()
        if error is not None:
            watch.handle._failed(error)
            return
        recovery: Recovery = future.result()
        new_run_id = recovery.new_run_id
        self._record("completed", watch.run_id, attempt=recovery.attempts, new_run_id=new_run_id,
                     checkpoint=recovery.checkpoint.tinker_path)
        following = watch.handle.watching and new_run_id is not None and _is_run_id(new_run_id)
        if new_run_id is None:
            log.warning("run %s: the restored client has no model_id; the new run is not watched", watch.run_id)
        elif not _is_run_id(new_run_id):
            log.warning("run %s: the restored client's model_id %r is not a valid run id; not watched",
                        watch.run_id, new_run_id[:80])
        if following:
            metadata = {**watch.metadata, "training_client": recovery.client}
            try:
                self._watch(new_run_id, watch.service, metadata, watch.handle,
                            reason=f"recovered from {watch.run_id}")
            except Shutdown:
                following = False
        watch.handle._completed(recovery, watching=following)  # the loop sees it all at once

    # --- journal --------------------------------------------------------------------------------

    def _record(self, event: str, run_id: str, **fields: Any) -> None:
        if self._journal is not None:
            self._journal.write(self._clock.now(), event, run_id, **fields)

    def _open_journal(self) -> None:
        heads = lineage_heads(read_journal(self._journal_path))  # type: ignore[arg-type]
        self._journal = Journal(self._journal_path)  # type: ignore[arg-type]
        for signal in signals.ALL:
            event = signal.name.rsplit(".", 1)[1]
            if event == "completed":
                continue  # written by _recovery_done, with the new run id
            receiver = self._journal_receiver(event)
            for sender in (self, self.executor):
                if sender is not None:
                    signal.connect(receiver, sender=sender, weak=False)
            self._receivers.append((signal, receiver))
        if heads and self._service is None:
            log.warning("journal %s lists %d run(s) but the monitor has no service= to recover them; not resumed",
                        self._journal_path, len(heads))
            return
        for run_id in heads:
            if not _is_run_id(run_id):
                log.warning("journal %s lists %r, not a valid run id; skipped",
                            self._journal_path, str(run_id)[:80])
            elif run_id not in self._watches:
                handle = RunHandle(run_id, None, stop=self.stop_monitoring, poll=self.poll_now)
                self._watch(run_id, self._service, {}, handle, reason="resumed from journal")
        if heads:
            log.info("resumed %d run(s) from journal %s", len(heads), self._journal_path)

    def _journal_receiver(self, event: str) -> Any:
        def receiver(_sender: Any, **payload: Any) -> None:
            checkpoint = payload.get("checkpoint")
            error = payload.get("error")
            self._record(
                event,
                payload["run_id"],
                attempt=payload.get("attempt", 0),
                checkpoint=getattr(checkpoint, "tinker_path", None),
                error=None if error is None else f"{type(error).__name__}: {error}",
                reason=payload.get("reason"),
            )

        return receiver


def _is_run_id(run_id: Any) -> bool:
    """True when ``run_id`` may go into a URL path (see ``check_run_id``)."""
    try:
        check_run_id(run_id)
    except (TypeError, ValueError):
        return False
    return True
