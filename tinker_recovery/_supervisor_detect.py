"""How ``tinker-recovery run`` finds out that the run its command trains is corrupted.

``_detector()`` is the one swap point: a detect-only ``Monitor`` when this package's Monitor has that
form, else a plain polling loop over ``RestClient``. Both take ``target()`` (the current launch number
and run id, or None) and call ``on_corrupted(launch, run_id, checkpoint)`` once per target that reads
corrupted, and ``on_error(run_id, error)`` for a failed poll. Private to the supervisor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .errors import TinkerRecoveryError
from .models import Checkpoint
from .policy import Policy
from .rest import RestClient
from .signals import detected, poll_error

log = logging.getLogger("tinker_recovery.supervisor")


class _PollingDetector:
    """Polls the run ``target()`` names every ``interval_s`` over REST and calls ``on_corrupted`` once
    per target (a launch number and a run id) that reads corrupted, ``on_error`` for a failed poll;
    one named daemon thread.

    The one piece to swap for ``Monitor(None, policy, config, detect_only=True)`` once it exists
    (a ``monitor_run`` per learned run id, and a ``signals.detected`` receiver for that sender).
    """

    def __init__(
        self,
        rest: RestClient,
        interval_s: float,
        target: Callable[[], tuple[int, str] | None],
        on_corrupted: Callable[[int, str, Checkpoint | None], None],
        on_error: Callable[[str, TinkerRecoveryError], None],
    ) -> None:
        self._rest = rest
        self._interval_s = interval_s
        self._target = target
        self._on_corrupted = on_corrupted
        self._on_error = on_error
        self._stop = threading.Event()
        self._reported: set[tuple[int, str]] = set()
        self._thread = threading.Thread(
            target=self._loop, name="tinker_recovery.supervisor.poll", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                target = self._target()
                if target is None or target in self._reported:
                    continue
                run_id = target[1]
                try:
                    run = self._rest.get_training_run(
                        run_id, timeout_s=max(1.0, min(self._interval_s, 30.0)), max_retries=0
                    )
                except TinkerRecoveryError as error:
                    self._on_error(run_id, error)
                    continue
                if run.corrupted:
                    self._reported.add(target)
                    self._on_corrupted(target[0], run_id, run.last_checkpoint)
            except Exception:
                log.error("supervisor poll failed; polling goes on", exc_info=True)


class _NoService:
    """The service a detect-only Monitor is given: the supervisor restarts the command, so no client is
    ever created here (both methods raise)."""

    def create_training_client_from_state(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError("tinker-recovery run creates no training client: it reruns the command")

    create_training_client_from_state_with_optimizer = create_training_client_from_state


class _MonitorDetector:
    """The same contract as ``_PollingDetector``, with a detect-only ``Monitor`` doing the polling.

    One named daemon thread follows ``target()`` (a launch number and a run id; learning it may read
    the checkpoint log) every ``interval_s`` and moves the Monitor's watch when it changes; the
    Monitor's own threads poll and send ``detected``/``poll_error`` (with the Monitor as sender), which
    receivers connected here turn into ``on_corrupted``/``on_error`` for the current target only.
    """

    def __init__(
        self,
        rest: RestClient,
        interval_s: float,
        target: Callable[[], tuple[int, str] | None],
        on_corrupted: Callable[[int, str, Checkpoint | None], None],
        on_error: Callable[[str, TinkerRecoveryError], None],
    ) -> None:
        from .monitor import Monitor

        policy = Policy(enabled=True, poll_interval_ms=max(1, round(interval_s * 1000)))
        self._monitor = Monitor(None, policy, rest=rest, detect_only=True)  # type: ignore[call-arg,unused-ignore]
        self._interval_s = interval_s
        self._target = target
        self._on_corrupted = on_corrupted
        self._on_error = on_error
        self._current: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._reported: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="tinker_recovery.supervisor.follow", daemon=True
        )
        detected.connect(self._detected, sender=self._monitor, weak=False)
        poll_error.connect(self._poll_error, sender=self._monitor, weak=False)

    def _detected(self, _sender: Any, **fields: Any) -> None:
        current = self._current
        if current is not None and fields.get("run_id") == current[1]:
            self._report(current, fields.get("checkpoint"))

    def _report(self, target: tuple[int, str], checkpoint: Checkpoint | None) -> None:
        with self._lock:
            if target in self._reported:
                return
            self._reported.add(target)
        self._on_corrupted(target[0], target[1], checkpoint)

    def _poll_error(self, _sender: Any, **fields: Any) -> None:
        error = fields.get("error")
        current = self._current
        if (
            current is not None
            and fields.get("run_id") == current[1]
            and isinstance(error, TinkerRecoveryError)
        ):
            self._on_error(current[1], error)

    def start(self) -> None:
        self._monitor.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        detected.disconnect(self._detected, sender=self._monitor)
        poll_error.disconnect(self._poll_error, sender=self._monitor)
        self._monitor.stop(timeout)

    def _loop(self) -> None:
        while True:
            try:
                target = self._target()
                previous, self._current = self._current, target
                if target != previous:
                    if previous is not None and (target is None or target[1] != previous[1]):
                        self._monitor.stop_monitoring(previous[1])
                    if target is not None and (previous is None or target[1] != previous[1]):
                        self._monitor.monitor_run(target[1], _NoService())
                    elif target is not None and self._monitor.check(target[1]):  # type: ignore[attr-defined,unused-ignore]
                        # a relaunch on the same run: the Monitor reports a run again only after it read
                        # healthy, so ask it once
                        self._report(target, None)
            except Exception:
                log.error("supervisor could not follow the command's run; trying again", exc_info=True)
            if self._stop.wait(self._interval_s):
                return


def _detector() -> type[_PollingDetector] | type[_MonitorDetector]:
    """THE swap point: a detect-only Monitor when this package's Monitor has that form, else the
    plain polling loop."""
    import inspect

    from .monitor import Monitor

    has_detect_only = "detect_only" in inspect.signature(Monitor).parameters
    return _MonitorDetector if has_detect_only and _USE_MONITOR else _PollingDetector


_USE_MONITOR = True  # False keeps the plain polling loop even when the detect-only Monitor exists
