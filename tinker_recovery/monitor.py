"""The Monitor: polls watched runs on a background thread and hands corrupted ones over.

One owner: the monitor thread alone owns the poll schedule (``poll_schedule``) and every run's
state (``run_state``). Poll workers only do the HTTP requests and post what they got back to it;
public methods post commands. A small registry of watched runs (their handles, services and
metadata) is shared under one lock so ``monitor_run`` can return a run's handle at once.

Which thread sends what:

- ``watched``: the thread calling ``monitor_run``; for a run followed after a recovery, the thread
  that completed the recovery (an executor worker).
- ``unwatched``: the thread calling ``stop_monitoring``; for a dropped run, the notifier thread.
- ``detected``: a short-lived detection thread per detection (``<name>.detect``), which then hands
  the run to the executor; a blocking ``detected`` receiver delays only that run's recovery.
- ``poll_error``: the monitor's notifier thread (``<name>.notify``), so a blocking receiver
  delays no poll and no detection.

A receiver that raises, even ``KeyboardInterrupt`` or ``SystemExit``, is logged with its
traceback and skipped; the run's state and handle stay as they were.
"""

from __future__ import annotations

import collections
import importlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import attrs
from blinker import NamedSignal

from . import events, signals
from ._checks import check_int, check_seconds
from ._ids import check_run_id
from ._text import escape_text
from .clock import Clock, SystemClock
from .config import Config
from .errors import (
    AlreadyPending,
    ApiError,
    NoExecutor,
    NotFound,
    RecoveryDisabled,
    RequestTimeout,
    ResponseError,
    Shutdown,
)
from .handle import RunHandle
from .models import Checkpoint, RunBrief, TrainingRun
from .policy import Policy
from .poll_schedule import PollSchedule, pool_size
from .poll_settings import POLL_MODES, PollSettings, default_timeout_s
from .recovery import Recovery
from .redact import keys_of, redact_error_keys
from .rest import RestClient
from .run_state import LIST_UNAVAILABLE_STATUSES, RunState, Verdict
from .service import Recoverer, check_service

__all__ = ["POLL_MODES", "Monitor"]

Observed = TrainingRun | RunBrief
"""What a poll reads of a run: a full TrainingRun (its own GET) or a listing's RunBrief."""

log = logging.getLogger("tinker_recovery.monitor")

DEFAULT_POLL_CONCURRENCY = 64  # the poll pool's default cap (see Monitor's poll_concurrency)
MAX_POLL_CONCURRENCY = 4096  # PollSettings.concurrency's bound
MAX_PAGE_SIZE = 10_000  # PollSettings.page_size's bound
_NOTIFY_BACKLOG = 10_000  # poll_error signals queued behind a blocked receiver before dropping


@attrs.define(eq=False)
class _Watch:
    """A watched run as the registry knows it (written under the registry lock only)."""

    run_id: str
    service: Any
    metadata: dict[str, Any]
    handle: RunHandle
    lineage_id: str
    pending_recovery_id: str | None = None
    lineage_given: bool = False  # monitor_run(lineage_id=...): pass it on (else the executor knows it)
    stopped: bool = False


@attrs.define(eq=False)
class _Once:
    """A ``poll_once`` call waiting for one fresh outcome of each run (owned by the monitor thread)."""

    pending: dict[str, int] = attrs.field(factory=dict)  # outcomes still to see per run
    count: int = 0
    done: threading.Event = attrs.field(factory=threading.Event)


class _Workers:
    """Named daemon threads running jobs from one queue (daemon: never delay interpreter exit,
    which ``concurrent.futures`` pools would, as they join their workers at exit)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []

    def grow(self, size: int) -> None:
        while len(self._threads) < size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        self._jobs.put((job, args))

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, args = item
            try:
                job(*args)
            except BaseException:  # a worker never dies of what it runs
                log.error("%s: a job raised; going on", self._name, exc_info=True)

    def shutdown(self, deadline: float | None) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_remaining(deadline))


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def deliver(signal: NamedSignal, sender: Any, payload: dict[str, Any]) -> None:
    """Send ``signal`` to each receiver in turn; one that raises anything (BaseException
    included) is logged and skipped."""
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **payload)
        except BaseException:
            log.error(
                "receiver %r of %s raised; ignored (run %s)",
                receiver,
                signal.name,
                escape_text(payload.get("run_id"), 200),
                exc_info=True,
            )


class _Notifier:
    """One daemon thread sending queued signals in order."""

    def __init__(self, name: str, sender: Any) -> None:
        self._sender = sender
        self._queue: queue.SimpleQueue[tuple[NamedSignal, dict[str, Any]] | None] = queue.SimpleQueue()
        self._dropped = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, signal: NamedSignal, payload: dict[str, Any]) -> None:
        if self._queue.qsize() >= _NOTIFY_BACKLOG:
            self._dropped += 1
            if self._dropped == 1:
                log.error(
                    "a %s receiver blocks: %d signals queued; dropping further ones",
                    signal.name,
                    _NOTIFY_BACKLOG,
                )
            return
        self._queue.put((signal, payload))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            deliver(item[0], self._sender, item[1])

    def shutdown(self, deadline: float | None) -> None:
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join(_remaining(deadline))


class Monitor:
    """Polls each watched run every ``policy.poll_interval_ms`` and hands corrupted ones over.

    - ``executor``: a ``service.Recoverer`` (the package's ``Executor``) corrupted runs go to;
      without one, ``monitor_run`` raises NoExecutor unless ``detect_only``.
    - ``detect_only``: send ``detected`` and ``poll_error`` and hand nothing over (``executor``
      may be None; the policy need not be enabled). A run stays watched after ``detected``, which
      is sent again only after the run read healthy in between.
    - ``policy``: else ``config.recovery``, else ``Policy()``; must be enabled for ``monitor_run``
      (RecoveryDisabled) unless ``detect_only``.
    - ``config`` / ``rest``: REST access for polling; with neither, it is built from the first
      service given to ``monitor_run`` when that service exposes its base URL and key (the
      official ``tinker.ServiceClient`` does; a key of None reads ``TINKER_API_KEY``). A service
      whose host differs from the config's raises ValueError naming both hosts.
    - ``poll_concurrency``: the most poll workers (1..4096, default 64; the pool is sized from the
      interval, the runs and the measured round trip, up to this, so a few healthy runs use one or
      two); runs whose last poll timed out hold at most a quarter of them (at least one), so hanging
      runs cannot starve the rest. The cap is high because an idle worker is a daemon thread
      blocked on a queue (a few tens of KiB of stack, no CPU); it only matters when many runs meet
      a slow server, where more workers keep each run on its interval.
    - ``poll_timeout_s``: the time-out of one poll, and the time budget of one listing; None: the
      REST time-out, at most the interval, at least 1 s. Polls are not retried: the next is.
    - ``poll_mode``, ``list_page_size``: see ``PollSettings`` and ``PollSchedule``.
    - ``journal``: a path (str or PathLike: ``tinker_recovery.journal.Journal(path)`` is built,
      imported lazily, in ``start()``) or a journal-like object (with ``attach(monitor, executor)``
      and ``close()``); ``start()`` attaches it, ``stop()`` closes it. The journal subscribes
      itself to the signals and resumes its runs through ``monitor_run`` with ``service``.
    - ``clock``: injectable time source (see ``ManualClock``).

    Every time and count is checked when given (NaN, infinities and values beyond
    ``threading.TIMEOUT_MAX`` raise ValueError naming the field).
    """

    def __init__(
        self,
        executor: Recoverer | None,
        policy: Policy | None = None,
        config: Config | None = None,
        rest: RestClient | None = None,
        *,
        service: Any = None,
        journal: Any = None,
        clock: Clock | None = None,
        poll_concurrency: int = DEFAULT_POLL_CONCURRENCY,
        poll_timeout_s: float | None = None,
        poll_mode: str = "auto",
        list_page_size: int = 100,
        detect_only: bool = False,
        name: str = "tinker_recovery.monitor",
    ) -> None:
        policy = config.recovery if policy is None and config is not None else policy
        self.policy = policy if policy is not None else Policy()
        if not isinstance(self.policy, Policy):
            raise TypeError(f"policy: expected a Policy, got {type(self.policy).__name__}")
        if not isinstance(detect_only, bool):
            raise TypeError(f"detect_only: expected a bool, got {detect_only!r}")
        interval_s = self.policy.poll_interval_ms / 1000.0
        if poll_timeout_s is None:
            base = config or (rest.config if isinstance(rest, RestClient) else None)
            poll_timeout_s = default_timeout_s(interval_s, base.timeout_s if base is not None else 30.0)
        check_seconds("poll_timeout_s", poll_timeout_s, minimum=0, inclusive=False)
        check_seconds("poll_interval_ms", interval_s, minimum=0, inclusive=False)
        check_int("poll_concurrency", poll_concurrency, minimum=1, maximum=MAX_POLL_CONCURRENCY)
        check_int("list_page_size", list_page_size, minimum=1, maximum=MAX_PAGE_SIZE)
        self.settings = PollSettings(
            interval_s=interval_s,
            timeout_s=float(poll_timeout_s),
            concurrency=poll_concurrency,
            mode=poll_mode,
            page_size=list_page_size,
        )
        self.executor, self.config, self.detect_only = executor, config, detect_only
        self.poll_mode = poll_mode
        self._rest = (
            rest if rest is not None else (RestClient(config, pool_size=poll_concurrency) if config else None)
        )
        self._owns_rest = rest is None and config is not None
        self._service, self._journal_spec = service, journal
        self._journal: Any = None
        self._attached = False
        self._clock = clock or SystemClock()
        self._name = name
        self._lock = threading.Lock()  # guards the registry below, and the lifecycle fields
        self._watches: dict[str, _Watch] = {}
        self._recovering: dict[str, _Watch] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        # owned by the monitor thread:
        self._schedule = PollSchedule(self.settings)
        self._states: dict[str, RunState] = {}
        self._onces: list[_Once] = []
        self._round_trip_s = 0.05
        self._list_warned = False
        self._listing_error: BaseException | None = None
        self._workers = _Workers(f"{name}.poll")
        self._notifier: _Notifier | None = None

    def __repr__(self) -> str:
        return (
            f"Monitor(watching={len(self._watches)}, poll_mode={self.poll_mode!r}, "
            f"detect_only={self.detect_only}, stopped={self._stopping})"
        )

    @property
    def service(self) -> Any:
        """The ``service=`` given: what a journal resumes runs with (None if not given)."""
        return self._service

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Monitor:
        """Start the monitor thread, then attach the journal (if any); again: does nothing, except
        retrying a journal whose attach failed. Raises Shutdown after ``stop``."""
        with self._lock:
            if self._stopping:
                raise Shutdown("Monitor: cannot start after stop")
            if self._thread is None:
                self._notifier = _Notifier(f"{self._name}.notify", self)
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            attach = self._journal_spec is not None and not self._attached
            self._attached = True
        if attach:
            try:
                self._attach_journal()
            except BaseException:
                with self._lock:
                    self._attached = False
                raise
        return self

    def _attach_journal(self) -> None:
        spec = self._journal_spec
        if isinstance(spec, (str, os.PathLike)):
            self._journal = self._journal or importlib.import_module("tinker_recovery.journal").Journal(spec)
        else:
            self._journal = spec
        self._journal.attach(self, self.executor)

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling; return within ``timeout`` seconds (None: wait for the threads) plus a
        small margin, whatever is in flight. Safe from any thread, any receiver, and twice.
        Recoveries already handed over go on: shut the executor down too."""
        if timeout is not None:
            check_seconds("timeout", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            first, self._stopping = not self._stopping, True
            thread, notifier = self._thread, self._notifier
        self._post("stop")
        if thread is not None and thread is not threading.current_thread():
            thread.join(_remaining(deadline))
        for once in [*self._onces, *(item[1] for item in list(self._inbox) if item[0] == "once")]:
            once.done.set()
        self._workers.shutdown(deadline)
        if thread is not None and not thread.is_alive():  # the state is ours now: report what polls ended
            for item in list(self._inbox):
                if item[0] == "error":
                    self._on_error(*item[1:])
        if notifier is not None:
            notifier.shutdown(deadline)
        if first:
            self._close_resources()

    def _close_resources(self) -> None:
        try:
            if self._journal is not None:
                self._journal.close()
        except Exception:
            log.error("closing the journal failed", exc_info=True)
        if self._owns_rest and self._rest is not None:
            self._rest.close()

    # --- watching -------------------------------------------------------------------------------

    def monitor_run(
        self,
        run_id: str,
        service: Any,
        metadata: Mapping[str, Any] | None = None,
        *,
        training_client: Any = None,
        lineage_id: str | None = None,
        pending_recovery_id: str | None = None,
    ) -> RunHandle:
        """Watch ``run_id``; return the handle a training loop reads the current client from.

        - ``service`` creates the restored client (None is accepted by a detect-only monitor);
          ``training_client`` is the current one (also accepted as ``metadata["training_client"]``).
        - ``lineage_id``: the run id the lineage started from (a journal's resume); None: the
          executor's record, else ``run_id``. ``pending_recovery_id``: a recovery begun before a
          crash and never finished; passed on as ``recovery_id`` so the executor adopts it.
        - A run already watched (or being recovered) returns its existing handle.
        - A monitor not started is started (logged at INFO).

        Raises RecoveryDisabled (policy not enabled), NoExecutor (no executor, not detect-only),
        ValueError (bad run id, no REST access, hosts differ), TypeError (bad service or
        metadata), and Shutdown after ``stop``.
        """
        check_run_id(run_id)
        if not self.detect_only and not self.policy.enabled:
            raise RecoveryDisabled(
                f"monitoring {run_id} refused: the policy is not enabled (Policy(enabled=True))"
            )
        if not self.detect_only and self.executor is None:
            raise NoExecutor(f"monitoring {run_id} refused: the monitor has no executor")
        if service is not None or not self.detect_only:
            check_service(service)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata: expected a mapping or None, got {type(metadata).__name__}")
        data = dict(metadata or {})
        if training_client is not None:
            data["training_client"] = training_client
        self._ensure_rest(service)
        with self._lock:
            if self._stopping:
                raise Shutdown(f"monitoring {run_id} refused: the monitor is stopped")
            existing = self._watches.get(run_id) or self._recovering.get(run_id)
            started = self._thread is not None
        if existing is not None:
            return existing.handle
        if not started:
            log.info("monitor_run(%s): starting the monitor (call start() first to silence this)", run_id)
            self.start()
        given = lineage_id is not None
        if lineage_id is None:
            lineage_of = getattr(self.executor, "lineage_of", None)
            lineage_id = lineage_of(run_id) if callable(lineage_of) else run_id
        handle = self._new_handle(run_id, data.get("training_client"))
        watch = _Watch(run_id, service, data, handle, str(lineage_id), pending_recovery_id, given)
        with self._lock:
            existing = self._watches.get(run_id) or self._recovering.get(run_id)
            if existing is None:
                self._watches[run_id] = watch
        if existing is not None:
            return existing.handle
        reason = "resumed" if given or pending_recovery_id is not None else "monitor_run"
        deliver(signals.watched, self, self._payload(watch, reason=reason))
        self._post("add", run_id)
        return handle

    def _new_handle(self, run_id: str, client: Any) -> RunHandle:
        check: dict[str, Any] = {"check": self.check}  # RunHandle.check asks Monitor.check
        try:
            return RunHandle(run_id, client, stop=self.stop_monitoring, poll=self.poll_now, **check)
        except TypeError:  # a RunHandle without check=
            return RunHandle(run_id, client, stop=self.stop_monitoring, poll=self.poll_now)

    def _ensure_rest(self, service: Any) -> None:
        """Check the service's host against the REST access; build that access from the service
        when there is none. Raises ValueError."""
        url, key = getattr(service, "_base_url", None), getattr(service, "_api_key", None)
        with self._lock:
            rest = self._rest
            if rest is None:
                if url is None and hasattr(service, "_base_url"):  # the SDK reads TINKER_BASE_URL itself
                    url, key = Config().base_url, None
                if not isinstance(url, str):
                    raise ValueError(
                        "Monitor needs REST access to poll runs: pass config= or rest=, or a "
                        "service exposing its base URL (tinker.ServiceClient(base_url=...))"
                    )
                try:
                    config = Config(api_key=key if isinstance(key, str) else None, base_url=url)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"Monitor: no REST access from the service: {error}") from None
                self._rest = RestClient(config, pool_size=self.settings.concurrency)
                self._owns_rest = True
                return
        if isinstance(url, str) and isinstance(getattr(rest, "config", None), Config):
            mine, theirs = urlsplit(rest.config.base_url), urlsplit(url)
            if (mine.hostname, mine.port) != (theirs.hostname, theirs.port):
                raise ValueError(
                    f"Monitor: the polled host {mine.netloc!r} differs from the service's "
                    f"host {theirs.netloc!r}; give the endpoint once"
                )

    def stop_monitoring(self, run_id: str) -> bool:
        """Stop watching ``run_id`` (a recovery in flight finishes, but its run is not followed);
        False if it was not watched. Nothing of the run stays in the monitor."""
        with self._lock:
            run_id = self._current_id(run_id)
            watch = self._watches.pop(run_id, None) or self._recovering.get(run_id)
            if watch is None or watch.stopped:
                return False
            watch.stopped = True
        self._post("remove", run_id)
        watch.handle._stopped()
        deliver(signals.unwatched, self, self._payload(watch, reason="user"))
        return True

    def poll_now(self, run_id: str) -> bool:
        """Poll ``run_id`` at once (or right after its poll in flight); False if not watched."""
        with self._lock:
            run_id = self._current_id(run_id)
            known = run_id in self._watches
        if known:
            self._post("poll_now", run_id)
        return known

    def check(self, run_id: str) -> bool:
        """Is ``run_id`` corrupted now? One GET, on the calling thread, within the poll time-out.

        False: healthy (the loop's own error is the loop's). True: corrupted, and detection is
        triggered at once (no confirmation polls: the caller's failure is the second witness), or
        the run is being recovered already. Raises the package's errors (TinkerRecoveryError) when
        the run cannot be read, ValueError for a bad run id or without REST access.
        """
        check_run_id(run_id)
        with self._lock:
            run_id = self._current_id(run_id)
            if run_id in self._recovering:
                return True
            rest = self._rest
        if rest is None:
            raise ValueError("Monitor needs REST access to check runs: pass config= or rest=")
        run = rest.get_training_run(run_id, timeout_s=self.settings.timeout_s, max_retries=0)
        if run.corrupted:
            self._post("checked", run_id, run)
        return bool(run.corrupted)

    def poll_once(self, timeout: float | None = None) -> int:
        """Poll every watched run now and wait for a fresh answer of each (up to ``timeout``
        seconds); return how many runs. Starts the monitor if needed; returns early if ``stop``
        runs meanwhile. Raises TimeoutError if answers are still missing after ``timeout``."""
        if timeout is not None:
            check_seconds("timeout", timeout)
        if self._thread is None and not self._stopping:
            self.start()
        once = _Once()
        self._post("once", once)  # the monitor thread adopts it
        if self._stopping:
            once.done.set()
        if not once.done.wait(timeout):
            raise TimeoutError(f"poll_once: answers still missing after {timeout} s")
        return once.count

    @property
    def watched(self) -> list[str]:
        """The run ids watched now (runs being recovered not included)."""
        with self._lock:
            return list(self._watches)

    def handle(self, run_id: str) -> RunHandle | None:
        """The handle of a watched run (or one being recovered), by its current or original id; None
        once the lineage is no longer watched."""
        with self._lock:
            run_id = self._current_id(run_id)
            watch = self._watches.get(run_id) or self._recovering.get(run_id)
        return None if watch is None else watch.handle

    def _current_id(self, run_id: str) -> str:
        """The id its lineage is watched under now, for a current or original run id (lock held).

        A miss scans the watched runs (O(watched)); it keeps no map of old ids, so nothing of a
        recovered run stays behind."""
        if run_id in self._watches or run_id in self._recovering:
            return run_id
        for watch in (*self._watches.values(), *self._recovering.values()):
            if watch.handle.original_run_id == run_id:
                return watch.run_id
        return run_id

    # --- the monitor thread ---------------------------------------------------------------------

    def _post(self, *item: Any) -> None:
        self._inbox.append(item)
        self._wake.set()

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
        plan = self._schedule.plan(now)
        work = len(plan.alone) + len(plan.pages)
        if work:
            self._workers.grow(
                pool_size(
                    len(self._schedule),
                    self.settings.interval_s,
                    self._round_trip_s,
                    self.settings.concurrency,
                    suspect_slots=self.settings.suspect_slots,
                )
            )
        for offset in plan.pages:
            self._workers.submit(self._read_page, offset)
        for run_id in plan.alone:
            self._workers.submit(self._read_run, run_id)

    def _read_run(self, run_id: str) -> None:  # on a poll worker: I/O only
        began, rest = time.monotonic(), self._rest
        try:
            assert rest is not None  # monitor_run refuses runs without REST access
            run = rest.get_training_run(run_id, timeout_s=self.settings.timeout_s, max_retries=0)
        except BaseException as error:
            self._post("error", run_id, self._redacted(error), time.monotonic() - began)
        else:
            self._post("read", run_id, run, time.monotonic() - began)

    def _read_page(self, offset: int) -> None:  # on a poll worker: I/O only
        rest = self._rest
        try:
            assert rest is not None
            brief = getattr(rest, "list_training_runs_brief", None)
            runs: list[Observed]
            if callable(brief):  # reads only id and corrupted; an item that does not parse is skipped
                runs, cursor, _skipped = brief(
                    limit=self.settings.page_size,
                    offset=offset,
                    timeout_s=self.settings.timeout_s,
                    max_retries=0,
                )
            else:  # a RestClient stand-in without the cheap reader
                full, cursor = rest.list_training_runs(
                    limit=self.settings.page_size,
                    offset=offset,
                    timeout_s=self.settings.timeout_s,
                    max_retries=0,
                )
                runs = list(full)
        except BaseException as error:
            self._post("page_error", offset, self._redacted(error))
        else:
            self._post("page", offset, runs, cursor.total_count)

    # --- outcomes and commands (monitor thread) ---------------------------------------------------

    def _on_add(self, run_id: str) -> None:
        with self._lock:
            watched = run_id in self._watches
        if watched and run_id not in self._schedule:
            self._schedule.add(run_id, self._clock.monotonic())
            self._states[run_id] = RunState(self.policy.confirm_polls, self.policy.max_poll_errors)

    def _on_remove(self, run_id: str) -> None:
        with self._lock:
            if run_id in self._watches:  # watched again meanwhile
                return
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

    def _on_read(self, run_id: str, run: TrainingRun, round_trip_s: float) -> None:
        self._round_trip_s = 0.8 * self._round_trip_s + 0.2 * round_trip_s
        if run_id not in self._schedule:
            return
        self._schedule.finished(run_id, self._clock.monotonic())
        self._judge(run_id, run)

    def _on_checked(self, run_id: str, run: TrainingRun) -> None:
        if run_id in self._schedule:
            self._judge(run_id, run, confirmed=True)

    def _on_error(self, run_id: str, error: BaseException, round_trip_s: float) -> None:
        if run_id not in self._schedule:
            return
        state = self._states[run_id]
        outcome = state.failed(
            error, interval_s=self.settings.interval_s, retry_after_s=getattr(error, "retry_after_s", None)
        )
        self._schedule.finished(
            run_id,
            self._clock.monotonic(),
            timed_out=isinstance(error, RequestTimeout),
            defer_s=outcome.defer_s,
        )
        self._answered(run_id)
        watch = self._registered(run_id)
        if watch is None:
            return
        if not isinstance(error, Exception):
            log.error("run %s: poll raised %s; treated as a poll error", run_id, type(error).__name__)
        if outcome.verdict is Verdict.DROPPED:
            self._drop(watch, outcome.reason, error)
        elif outcome.report:
            log.warning("run %s: %s (%s)", run_id, outcome.reason, escape_text(error, 300))
            self._notify(
                signals.poll_error,
                watch,
                error=error,
                reason=outcome.reason,
                reason_class=events.reason_class(error),
            )
        else:
            log.debug("run %s: %s (%s), reported before", run_id, outcome.reason, escape_text(error, 300))

    def _on_page(self, offset: int, runs: list[Observed], total: int) -> None:
        by_id = {run.training_run_id: run for run in runs}
        read, unread = self._schedule.page_read(offset, total, by_id, self._clock.monotonic())
        for run_id in read:
            self._judge(run_id, by_id[run_id])
        self._listing_ended(unread)

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
            )
        )

    def _listing_ended(self, unread: list[str]) -> None:
        """Runs a listing left unread are polled alone now (and answer then); after a failed
        listing each gets one ``poll_error`` (never counted towards dropping it)."""
        if self._schedule.listing or self._listing_error is None:
            return  # pages still in flight: the listing has not ended
        error, self._listing_error = self._listing_error, None
        reason = f"listing failed: {type(error).__name__}"
        for run_id in unread:
            watch = self._registered(run_id)
            if watch is not None:
                self._notify(
                    signals.poll_error,
                    watch,
                    error=error,
                    reason=reason,
                    reason_class=events.reason_class(error),
                )

    def _judge(self, run_id: str, run: Observed, *, confirmed: bool = False) -> None:
        outcome = self._states[run_id].read(bool(run.corrupted), confirmed=confirmed)
        self._answered(run_id)
        if outcome.verdict is not Verdict.CORRUPTED:
            return
        if self.detect_only:
            watch = self._registered(run_id)
            if watch is not None and outcome.report:
                threading.Thread(
                    target=deliver,
                    name=f"{self._name}.detect",
                    daemon=True,
                    args=(signals.detected, self, self._payload(watch, checkpoint=_last_checkpoint(run))),
                ).start()
            return
        with self._lock:
            watch = self._watches.pop(run_id, None)
            if watch is not None:
                self._recovering[run_id] = watch
        self._forget(run_id)
        if watch is not None:
            watch.handle._began()  # at once, so the handle never says "not recovering" in between
            threading.Thread(
                target=self._hand_over, args=(watch, run), name=f"{self._name}.detect", daemon=True
            ).start()

    def _registered(self, run_id: str) -> _Watch | None:
        with self._lock:
            return self._watches.get(run_id)

    def _drop(self, watch: _Watch, reason: str, error: BaseException) -> None:
        with self._lock:
            if self._watches.get(watch.run_id) is watch:
                del self._watches[watch.run_id]
        self._forget(watch.run_id)
        log.warning("run %s %s", watch.run_id, reason)
        dropped = NotFound(f"run {watch.run_id} {reason}", status_code=404)
        mark = getattr(watch.handle, "_dropped", None)
        (mark if callable(mark) else watch.handle._failed)(dropped)
        self._notify(
            signals.poll_error, watch, error=error, reason=reason, reason_class=events.reason_class(error)
        )
        self._notify(signals.unwatched, watch, reason=f"dropped: {reason}")

    # --- handing over and following (detection thread, executor's thread) -------------------------

    def _hand_over(self, watch: _Watch, observed: Observed) -> None:
        run = self._full_run(watch.run_id, observed)
        last_checkpoint = _last_checkpoint(run)
        deliver(signals.detected, self, self._payload(watch, checkpoint=last_checkpoint))
        extra: dict[str, Any] = {}
        if watch.lineage_given:
            extra["lineage_id"] = watch.lineage_id
        if watch.pending_recovery_id is not None:
            extra["recovery_id"] = watch.pending_recovery_id
        executor = self.executor
        has_rest = getattr(executor, "_has_rest", None)
        config = None if callable(has_rest) and has_rest() else self.config
        future: Future[Recovery] | None = None
        try:
            assert executor is not None  # monitor_run refuses runs without one unless detect-only
            future = executor.recover(
                watch.run_id,
                watch.service,
                self.policy,
                config=config,
                metadata=watch.metadata,
                last_checkpoint=last_checkpoint,
                run=run if isinstance(run, TrainingRun) else None,
                **extra,
            )
        except AlreadyPending as error:  # another monitor handed it over: follow that recovery
            future_of = getattr(self.executor, "future_of", None)
            future = future_of(watch.run_id) if callable(future_of) else None
            if future is None:
                self._lost(watch, error)
                return
        except BaseException as error:
            self._lost(watch, error)
            return
        assert future is not None
        future.add_done_callback(lambda done: self._recovery_done(watch, done))

    def _redacted(self, error: BaseException, service: Any = None) -> BaseException:
        """``error`` without the API key (the config's, the REST client's, the service's), without
        its chain and request objects: what may reach signals, handles, the journal and logs."""
        return redact_error_keys(error, keys_of(self.config, self._rest, service))

    def _full_run(self, run_id: str, observed: Observed) -> Observed:
        """A listing's brief read of a corrupted run, completed by one GET (detection thread): the
        executor copies the run's ``user_metadata`` onto the restored run. On failure the brief stays
        and the executor reads the run itself."""
        rest = self._rest
        if isinstance(observed, TrainingRun) or rest is None:
            return observed
        try:
            return rest.get_training_run(run_id, timeout_s=self.settings.timeout_s, max_retries=0)
        except Exception as error:
            log.warning(
                "run %s: could not read it in full after a listing (%s)", run_id, escape_text(error, 200)
            )
            return observed

    def _lost(self, watch: _Watch, error: BaseException) -> None:
        error = self._redacted(error, watch.service)
        log.warning(
            "run %s read corrupted but was not handed over: %s", watch.run_id, escape_text(error, 300)
        )
        with self._lock:
            self._recovering.pop(watch.run_id, None)
        watch.handle._failed(error)

    def _recovery_done(self, watch: _Watch, future: Future[Recovery]) -> None:
        """Follow the recovered run with the same service and handle; or mark the handle failed."""
        error = (
            Shutdown(f"recovery of {watch.run_id} cancelled") if future.cancelled() else future.exception()
        )
        if error is not None:
            with self._lock:
                self._recovering.pop(watch.run_id, None)
            watch.handle._failed(self._redacted(error, watch.service))
            return
        recovery = future.result()
        new_run_id = recovery.new_run_id
        follow = new_run_id is not None and _is_run_id(new_run_id)
        if not follow:
            log.warning(
                "run %s: the restored client's model_id %s is not a run id; the new run is not watched",
                watch.run_id,
                escape_text(new_run_id, 80),
            )
        with self._lock:  # one step: the lineage is never unfindable between its two runs
            self._recovering.pop(watch.run_id, None)
            follow = follow and not watch.stopped and not self._stopping
            if follow:
                assert new_run_id is not None
                lineage = getattr(recovery, "lineage_id", None) or watch.lineage_id
                successor = _Watch(
                    new_run_id,
                    watch.service,
                    {**watch.metadata, "training_client": recovery.client},
                    watch.handle,
                    str(lineage),
                )
                self._watches.setdefault(new_run_id, successor)
        if follow:
            deliver(signals.watched, self, self._payload(successor, reason=f"recovered from {watch.run_id}"))
            self._post("add", new_run_id)
        watch.handle._completed(recovery, watching=follow)

    # --- signals --------------------------------------------------------------------------------

    def _payload(self, watch: _Watch, **extra: Any) -> dict[str, Any]:
        return events.payload(
            run_id=watch.run_id,
            attempt=0,
            strategy=self.policy.strategy_name,
            metadata=watch.metadata,
            time=self._clock.now(),
            lineage_id=watch.lineage_id,
            recovery_id=None,
            **extra,
        )

    def _notify(self, signal: NamedSignal, watch: _Watch, **extra: Any) -> None:
        if self._notifier is not None:
            self._notifier.send(signal, self._payload(watch, **extra))


def _last_checkpoint(run: Observed) -> Checkpoint | None:
    """The run's last checkpoint, or None when a listing's item holds a malformed one."""
    try:
        return run.last_checkpoint
    except ResponseError:
        return None


def _is_run_id(run_id: Any) -> bool:
    """True when ``run_id`` may go into a URL path (see ``check_run_id``)."""
    try:
        check_run_id(run_id)
    except (TypeError, ValueError):
        return False
    return True
