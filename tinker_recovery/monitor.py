"""The Monitor: polls watched runs on a background thread and hands corrupted ones over.

The Monitor puts together parts that each have one job and one owner:

- ``_watches.Watches``: the registry of watched runs and runs being recovered (its own lock);
- ``_poller.Poller``: the poll loop, the one thread that owns the poll schedule and every run's
  state, with its pool of poll workers (I/O only);
- ``_detections.Detections``: acts on what the poll loop finds: sends ``detected``, hands the run
  to the recoverer (the package's ``Executor``, or anything with its ``recover``) and follows the
  restored run; reports failed polls and dropped runs through its notifier thread.

Which thread sends what:

- ``watched``: the thread calling ``monitor_run``; for a run followed after a recovery, the thread
  that completed the recovery (an executor worker).
- ``unwatched``: the thread calling ``stop_monitoring``; for a dropped run, the notifier thread.
- ``detected``: a short-lived detection thread per detection (``<name>.detect``), which then hands
  the run to the executor; a blocking ``detected`` receiver delays only that run's recovery.
- ``poll_error``: the monitor's notifier thread (``<name>.notify``), so a blocking receiver
  delays no poll and no detection.

A receiver that raises is logged with its traceback and skipped (``signals.send_guarded``); the
run's state and handle stay as they were.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from . import signals
from ._checks import check_seconds
from ._detections import Detections
from ._endpoint import check_same_host, rest_from_service
from ._ids import check_run_id
from ._poller import Poller
from ._watches import Watch, Watches
from .clock import Clock, SystemClock
from .config import Config
from .errors import NoExecutor, RecoveryDisabled, Shutdown
from .handle import RunHandle
from .policy import Policy
from .poll_settings import POLL_MODES, PollSettings
from .redact import keys_of, redact_error_keys
from .rest import RestClient
from .service import Recoverer, check_service

__all__ = ["POLL_MODES", "Monitor"]

log = logging.getLogger("tinker_recovery.monitor")

DEFAULT_POLL_CONCURRENCY = 64
"""The poll pool's default cap (see ``Monitor``'s ``poll_concurrency``)."""


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
    - ``poll_concurrency``: the most poll workers (1..4096, default 64); the pool is sized from the
      interval, the runs and the measured round trip, up to this. Runs whose last poll timed out
      hold at most a quarter of them (at least one), so hanging runs cannot starve the rest.
    - ``poll_timeout_s``: the time-out of one poll, and the time budget of one listing; None: the
      REST time-out, at most the interval, at least 1 s. Polls are not retried: the next is.
    - ``poll_mode``, ``list_page_size``: see ``PollSettings`` and ``PollSchedule``.
    - ``journal``: a path (a ``Journal`` is opened in ``start()``) or an object with
      ``attach(monitor, executor)`` and ``close()``: ``start()`` attaches it (it subscribes itself
      and resumes its runs with ``service``), ``stop()`` closes it.
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
        base = config or (rest.config if isinstance(rest, RestClient) else None)
        self.settings = PollSettings.for_monitor(
            self.policy.poll_interval_ms / 1000.0,
            poll_timeout_s=poll_timeout_s,
            rest_timeout_s=base.timeout_s if base is not None else 30.0,
            poll_concurrency=poll_concurrency,
            poll_mode=poll_mode,
            list_page_size=list_page_size,
        )
        self.executor, self.config, self.detect_only = executor, config, detect_only
        self.poll_mode = poll_mode
        self._service, self._journal_spec = service, journal
        self._journal: Any = None
        self._attached = False
        self._clock = clock or SystemClock()
        self._name = name
        self._lock = threading.Lock()  # guards the lifecycle and the REST access's creation
        self._watches = Watches()
        self._detections = Detections(
            self, self._watches, executor, self.policy, config, detect_only=detect_only,
            rest=lambda: self._poller.rest, follow=lambda run_id: self._poller.add(run_id),
            timeout_s=self.settings.timeout_s, clock=self._clock, name=name, redact=self._redacted,
        )  # fmt: skip
        self._poller = Poller(
            self.settings, self.policy, self._detections, clock=self._clock, name=name, redact=self._redacted
        )
        self._poller.rest = (
            rest if rest is not None else (RestClient(config, pool_size=poll_concurrency) if config else None)
        )
        self._owns_rest = rest is None and config is not None
        # What each RunHandle calls back, bound once here and shared by every handle: bound in
        # monitor_run they were three objects, 192 bytes, per watched run (issue 16).
        self._handle_calls = (self.stop_monitoring, self.poll_now, self.check)

    def __repr__(self) -> str:
        return (
            f"Monitor(watching={len(self._watches)}, poll_mode={self.poll_mode!r}, "
            f"detect_only={self.detect_only}, stopped={self._watches.closed})"
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
            if self._watches.closed:
                raise Shutdown("Monitor: cannot start after stop")
            if not self._poller.started:
                self._detections.start()
                self._poller.start()
            attach, self._attached = self._journal_spec is not None and not self._attached, True
        if attach:
            try:
                spec = self._journal_spec
                if isinstance(spec, (str, os.PathLike)):  # the path form: a Journal, imported lazily
                    spec = self._journal or importlib.import_module("tinker_recovery.journal").Journal(spec)
                self._journal = spec
                spec.attach(self, self.executor)
            except BaseException:
                with self._lock:
                    self._attached = False
                raise
        return self

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
            first = self._watches.close()
        self._poller.stop(deadline)
        self._detections.stop(deadline)
        if not first:
            return
        try:
            if self._journal is not None:
                self._journal.close()
        except Exception:
            log.error("closing the journal failed", exc_info=True)
        if self._owns_rest and self._poller.rest is not None:
            self._poller.rest.close()

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
        - A monitor not started is started (logged at INFO), and so is its executor.

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
        data: dict[str, Any] | None = None  # None: no dict of its own for a run without metadata
        if metadata or training_client is not None:
            data = dict(metadata or {})
            if training_client is not None:
                data["training_client"] = training_client
        with self._lock:
            if self._poller.rest is None:
                self._poller.rest, self._owns_rest = (
                    rest_from_service(service, pool_size=self.settings.concurrency),
                    True,
                )
        check_same_host(self._poller.rest, service)
        if self._watches.closed:
            raise Shutdown(f"monitoring {run_id} refused: the monitor is stopped")
        existing = self._watches.find(run_id)
        if existing is not None:
            return existing.handle
        if not self._poller.started and not self._watches.closed:
            log.info("monitor_run(%s): starting the monitor (call start() first to silence this)", run_id)
            self.start()
            if callable(start_executor := getattr(self.executor, "start", None)):
                start_executor()  # forgotten too, most likely; starting twice does nothing
        given = lineage_id is not None
        if lineage_id is None:
            lineage_of = getattr(self.executor, "lineage_of", None)
            lineage_id = lineage_of(run_id) if callable(lineage_of) else run_id
        stop, poll, check = self._handle_calls
        handle = RunHandle(
            run_id, data.get("training_client") if data else None, stop=stop, poll=poll, check=check
        )
        watch = self._watches.add(
            Watch(run_id, service, data, handle, str(lineage_id), pending_recovery_id, given)
        )
        if watch.handle is not handle:
            return watch.handle
        reason = "resumed" if given or pending_recovery_id is not None else "monitor_run"
        self._detections.send(signals.watched, watch, reason=reason)
        self._poller.add(run_id)
        return handle

    def stop_monitoring(self, run_id: str) -> bool:
        """Stop watching ``run_id`` (a recovery in flight finishes, but its run is not followed);
        False if it was not watched. Nothing of the run stays in the monitor."""
        watch = self._watches.stop(run_id)
        if watch is None:
            return False
        self._poller.remove(watch.run_id)
        watch.handle._stopped()
        self._detections.send(signals.unwatched, watch, reason="user")
        return True

    def poll_now(self, run_id: str) -> bool:
        """Poll ``run_id`` at once (or right after its poll in flight); False if not watched."""
        current = self._watches.current_id(run_id)
        if not self._watches.is_watched(current):
            return False
        self._poller.poll_now(current)
        return True

    def check(self, run_id: str) -> bool:
        """Is ``run_id`` corrupted now? One GET, on the calling thread, within the poll time-out.

        False: healthy (the loop's own error is the loop's). True: corrupted, and detection is
        triggered at once (no confirmation polls: the caller's failure is the second witness), or
        the run is being recovered already. Raises the package's errors (TinkerRecoveryError) when
        the run cannot be read, ValueError for a bad run id or without REST access.
        """
        check_run_id(run_id)
        if self._watches.recovering(run_id):
            return True
        return self._poller.check(self._watches.current_id(run_id))

    def poll_once(self, timeout: float | None = None) -> int:
        """Poll every watched run now and wait for a fresh answer of each (up to ``timeout``
        seconds); return how many runs. Starts the monitor if needed; returns early if ``stop``
        runs meanwhile. Raises TimeoutError if answers are still missing after ``timeout``."""
        if not self._poller.started and not self._watches.closed:
            self.start()
        return self._poller.poll_once(timeout)

    @property
    def watched(self) -> list[str]:
        """The run ids watched now (runs being recovered not included)."""
        return self._watches.ids()

    def handle(self, run_id: str) -> RunHandle | None:
        """The handle of a watched run (or one being recovered), by its current or original id; None
        once the lineage is no longer watched."""
        watch = self._watches.find(run_id)
        return None if watch is None else watch.handle

    # --- helpers --------------------------------------------------------------------------------

    def _redacted(self, error: BaseException, service: Any = None) -> BaseException:
        """``error`` without the API key (the config's, the REST client's, the service's), without
        its chain and request objects: what may reach signals, handles, the journal and logs."""
        return redact_error_keys(error, keys_of(self.config, self._poller.rest, service))
