"""What a Monitor does with what its poll loop finds (``_poller.PollListener``).

- A corrupted run is handed to the recoverer, or, detect-only, only reported. The hand-over runs
  on a short-lived detection thread per detection (``<name>.detect``): it sends ``detected`` and
  calls ``recover``; the thread that completes the recovery's Future (an executor worker) follows
  the restored run or marks the handle failed.
- A failed poll worth reporting becomes a ``poll_error``; a dropped run is let go (its handle says
  why, ``poll_error`` and ``unwatched`` are sent). Both go through the notifier thread
  (``<name>.notify``), so a receiver that blocks delays no poll.

The poll loop calls in on its own thread: nothing here waits there.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from . import signals
from ._ids import check_run_id
from ._text import escape_text
from ._threads import Notifier
from ._watches import Watch, Watches, payload
from .errors import AlreadyPending, NotFound, ResponseError, Shutdown
from .events import reason_class
from .models import Checkpoint, RunBrief, TrainingRun
from .signals import send_guarded

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._poller import Observed
    from .clock import Clock
    from .config import Config
    from .policy import Policy
    from .recovery import Recovery
    from .rest import RestClient
    from .service import Recoverer

__all__ = ["Detections", "last_checkpoint"]

log = logging.getLogger("tinker_recovery.monitor")


def last_checkpoint(run: Observed) -> Checkpoint | None:
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


class Detections:
    """Acts on the poll loop's findings about the runs of ``watches``.

    - ``sender``: the Monitor (the sender of its signals).
    - ``recoverer``: where corrupted runs go (None: detect-only, ``detect_only=True``).
    - ``rest()``: the REST access now (a run read by a listing is read in full before the
      hand-over); ``follow(run_id)``: start polling a restored run.
    - ``redact(error, service)``: what an error becomes before it reaches a handle, a signal or
      a log line.
    """

    def __init__(
        self,
        sender: Any,
        watches: Watches,
        recoverer: Recoverer | None,
        policy: Policy,
        config: Config | None,
        *,
        detect_only: bool,
        rest: Callable[[], RestClient | None],
        follow: Callable[[str], None],
        timeout_s: float,
        clock: Clock,
        name: str,
        redact: Callable[[BaseException, Any], BaseException],
    ) -> None:
        self._sender, self._watches, self._detect_only = sender, watches, detect_only
        self._recoverer, self._policy, self._config = recoverer, policy, config
        self._rest, self._follow, self._timeout_s = rest, follow, timeout_s
        self._clock, self._name, self._redact = clock, name, redact
        self._notifier: Notifier | None = None

    def start(self) -> None:
        """Start the notifier thread (once)."""
        if self._notifier is None:
            self._notifier = Notifier(f"{self._name}.notify", self._sender)

    def stop(self, deadline: float | None) -> None:
        """Send the queued signals and stop the notifier, waiting until ``deadline``."""
        if self._notifier is not None:
            self._notifier.shutdown(deadline)

    def send(self, signal: Any, watch: Watch, **extra: Any) -> None:
        """Send ``signal`` about ``watch`` now, on this thread."""
        send_guarded(signal, self._sender, **self._payload(watch, **extra))

    def _notify(self, signal: Any, watch: Watch, **extra: Any) -> None:
        if self._notifier is not None:
            self._notifier.send(signal, self._payload(watch, **extra))

    def _payload(self, watch: Watch, **extra: Any) -> dict[str, Any]:
        return payload(watch, self._policy.strategy_name, self._clock.now(), **extra)

    # --- the PollListener (the poll loop's thread) ------------------------------------------------

    def is_watched(self, run_id: str) -> bool:
        return self._watches.is_watched(run_id)

    def corrupted(self, run_id: str, run: Observed, report: bool) -> bool:
        if self._detect_only:  # report it (once per corruption) and keep watching
            watch = self._watches.watched(run_id)
            if watch is not None and report:
                fields = self._payload(watch, checkpoint=last_checkpoint(run))
                self._thread(send_guarded, signals.detected, self._sender, **fields)
            return False
        watch = self._watches.begin_recovery(run_id)
        if watch is not None:
            watch.handle._began()  # at once: the handle never reads "not recovering" in between
            self._thread(self._hand_over, watch, run)
        return True

    def poll_failed(self, run_id: str, error: BaseException, reason: str) -> None:
        watch = self._watches.watched(run_id)
        if watch is not None:
            self._notify(
                signals.poll_error, watch, error=error, reason=reason, reason_class=reason_class(error)
            )

    def dropped(self, run_id: str, reason: str, error: BaseException) -> None:
        watch = self._watches.drop(run_id)
        if watch is None:
            return
        log.warning("run %s %s", run_id, reason)
        watch.handle._dropped(NotFound(f"run {run_id} {reason}", status_code=404))
        self._notify(signals.poll_error, watch, error=error, reason=reason, reason_class=reason_class(error))
        self._notify(signals.unwatched, watch, reason=f"dropped: {reason}")

    def _thread(self, target: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        threading.Thread(
            target=target, args=args, kwargs=kwargs, name=f"{self._name}.detect", daemon=True
        ).start()

    # --- handing over and following (detection thread, executor's thread) -------------------------

    def _hand_over(self, watch: Watch, observed: Observed) -> None:
        run = self._full_run(watch.run_id, observed)
        checkpoint = last_checkpoint(run)
        self.send(signals.detected, watch, checkpoint=checkpoint)
        extra: dict[str, Any] = {}
        if watch.lineage_given:
            extra["lineage_id"] = watch.lineage_id
        if watch.pending_recovery_id is not None:
            extra["recovery_id"] = watch.pending_recovery_id
        recoverer = self._recoverer
        has_rest = getattr(recoverer, "_has_rest", None)
        config = None if callable(has_rest) and has_rest() else self._config
        try:
            assert recoverer is not None  # monitor_run refuses runs without one unless detect-only
            future = recoverer.recover(
                watch.run_id,
                watch.service,
                self._policy,
                config=config,
                metadata=watch.metadata,
                last_checkpoint=checkpoint,
                run=run if isinstance(run, TrainingRun) else None,
                **extra,
            )
        except AlreadyPending as error:  # another monitor handed it over: follow that recovery
            future_of = getattr(recoverer, "future_of", None)
            pending = future_of(watch.run_id) if callable(future_of) else None
            if pending is None:
                self._lost(watch, error)
                return
            future = pending
        except BaseException as error:
            self._lost(watch, error)
            return
        future.add_done_callback(lambda done: self._recovery_done(watch, done))

    def _full_run(self, run_id: str, observed: Observed) -> Observed:
        """A brief read of a corrupted run (a poll's or a listing's), made whole: from the answer
        as read, else by one GET (the executor copies the run's ``user_metadata`` onto the restored
        run). On failure the brief stays and the executor reads the run itself."""
        if isinstance(observed, TrainingRun):
            return observed
        try:
            whole = observed.full() if isinstance(observed, RunBrief) else None
        except ResponseError as error:
            log.debug("run %s: its answer does not parse in full (%s)", run_id, escape_text(error, 200))
            whole = None
        if whole is not None:
            return whole
        rest = self._rest()
        if rest is None:
            return observed
        try:
            return rest.get_training_run(run_id, timeout_s=self._timeout_s, max_retries=0)
        except Exception as error:
            log.warning(
                "run %s: could not read it in full after a listing (%s)", run_id, escape_text(error, 200)
            )
            return observed

    def _lost(self, watch: Watch, error: BaseException) -> None:
        error = self._redact(error, watch.service)
        log.warning(
            "run %s read corrupted but was not handed over: %s", watch.run_id, escape_text(error, 300)
        )
        self._watches.end_recovery(watch)
        watch.handle._failed(error)

    def _recovery_done(self, watch: Watch, future: Future[Recovery]) -> None:
        """Follow the recovered run with the same service and handle; or mark the handle failed."""
        error = (
            Shutdown(f"recovery of {watch.run_id} cancelled") if future.cancelled() else future.exception()
        )
        if error is not None:
            self._watches.end_recovery(watch)
            watch.handle._failed(self._redact(error, watch.service))
            return
        recovery = future.result()
        new_run_id = recovery.new_run_id
        if new_run_id is None or not _is_run_id(new_run_id):
            log.warning(
                "run %s: the restored client's model_id %s is not a run id; the new run is not watched",
                watch.run_id,
                escape_text(new_run_id, 80),
            )
            new_run_id = None
        lineage = getattr(recovery, "lineage_id", None) or watch.lineage_id
        successor = self._watches.follow(watch, new_run_id, recovery.client, str(lineage))
        if successor is not None:
            reason = f"recovered from {watch.run_id}"
            self.send(signals.watched, successor, reason=reason)
            self._follow(successor.run_id)
        watch.handle._completed(recovery, watching=successor is not None)
