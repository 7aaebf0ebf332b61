"""The recovery signals: blinker named signals in a namespace owned by this package.

Each is named ``tinkex.recovery.<event>``. The sender is the Monitor or the Executor that saw the
event. Every payload holds ``run_id``, ``attempt`` (0 for monitor events), ``strategy`` and
``metadata``, plus ``checkpoint``, ``client`` and ``error`` where they apply, and ``reason`` (a short
text) on ``failed``, ``exhausted`` and ``poll_error``.

=====================  ==============================  ========================================
signal                 sent from                       extra payload
=====================  ==============================  ========================================
detected               a detection thread of the       checkpoint (the run's last, or None)
                       monitor (``<name>.detect``)
started                executor worker                 (the attempt begins)
checkpoint_selected    executor worker                 checkpoint
client_created         executor worker                 checkpoint, client, new_run_id
completed              executor worker                 checkpoint, client, new_run_id, duration_s
failed                 executor worker, or the thread  error, reason, reason_class, checkpoint
                       that cut it short (shutdown's   (None if none chosen), duration_s
                       caller, the scheduler thread,
                       interpreter exit)
exhausted              as ``failed``                   error, reason, reason_class, duration_s
poll_error             the monitor's notifier thread   error, reason, reason_class
                       (``<name>.notify``)
=====================  ==============================  ========================================

Every payload also holds ``time`` (UTC), ``lineage_id`` and ``recovery_id`` (see ``events.payload``).

blinker holds receivers weakly by default: connect a lambda or a notebook's inner function with
``signal.connect(receiver, weak=False)`` or keep a reference to it. A receiver that raises is logged
with its traceback and skipped; the other receivers still run (see ``send_guarded`` for
``KeyboardInterrupt`` and ``SystemExit``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from blinker import ANY, NamedSignal, Namespace

from ._text import escape_text

__all__ = [
    "namespace",
    "detected",
    "started",
    "checkpoint_selected",
    "client_created",
    "completed",
    "failed",
    "exhausted",
    "poll_error",
    "ALL",
    "send_guarded",
    "connect_all",
    "event_of",
    "watched",
    "unwatched",
]

log = logging.getLogger("tinker_recovery.signals")

namespace = Namespace()

detected = namespace.signal("tinkex.recovery.detected", "A watched run read corrupted.")
started = namespace.signal("tinkex.recovery.started", "A recovery attempt began.")
checkpoint_selected = namespace.signal("tinkex.recovery.checkpoint_selected", "A checkpoint was chosen.")
client_created = namespace.signal("tinkex.recovery.client_created", "A training client was restored.")
completed = namespace.signal("tinkex.recovery.completed", "A recovery finished.")
failed = namespace.signal("tinkex.recovery.failed", "A recovery attempt failed.")
exhausted = namespace.signal("tinkex.recovery.exhausted", "A run will not be recovered.")
poll_error = namespace.signal("tinkex.recovery.poll_error", "Polling a run failed.")

ALL: tuple[NamedSignal, ...] = (
    detected,
    started,
    checkpoint_selected,
    client_created,
    completed,
    failed,
    exhausted,
    poll_error,
)
"""Every recovery signal, in the order a recovery sends them."""


def event_of(signal: NamedSignal) -> str:
    """The event's short name: ``"detected"`` for ``tinkex.recovery.detected``."""
    return signal.name.rsplit(".", 1)[-1]


def connect_all(
    receiver: Callable[..., Any], *, sender: Any = ANY, to: Iterable[NamedSignal] = ALL
) -> Callable[[], None]:
    """Connect ``receiver(event, sender, **payload)`` to each signal of ``to`` (default ``ALL``),
    for ``sender`` (default: any), where ``event`` is the short name (``event_of``).

    Held strongly, so a lambda or a notebook's inner function stays connected. Returns a function
    that disconnects them all (safe to call twice).
    """
    connected: list[tuple[NamedSignal, Callable[..., None]]] = []
    for signal in to:

        def forward(sent_by: Any, _event: str = event_of(signal), **payload: Any) -> None:
            receiver(_event, sent_by, **payload)

        signal.connect(forward, sender=sender, weak=False)
        connected.append((signal, forward))

    def disconnect() -> None:
        for signal, forward in connected:
            signal.disconnect(forward)
        connected.clear()

    return disconnect


def send_guarded(signal: NamedSignal, sender: Any, **payload: Any) -> None:
    """Send ``signal`` to each receiver in turn; a receiver that raises is logged with its traceback
    and skipped, and the other receivers still run.

    On a library thread a ``KeyboardInterrupt`` or ``SystemExit`` from a receiver is logged and
    ignored like any error (the thread must survive it); on the main thread it is re-raised once
    logged, so Ctrl-C still stops a program that sends from there.
    """
    if signal.is_muted or not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **payload)
        except BaseException as error:
            log.error(
                "receiver %r of %s raised; ignored (run %s)",
                receiver,
                signal.name,
                escape_text(payload.get("run_id"), 200),
                exc_info=True,
            )
            if not isinstance(error, Exception) and threading.current_thread() is threading.main_thread():
                raise


# Not recovery events, so not in ALL: the journal records them to know which runs a restarted
# watcher must follow. Payload: events.payload(...) plus ``reason`` ("monitor_run", "resumed",
# "recovered from <id>", "user", "dropped: ...").
watched = namespace.signal("tinkex.recovery.watched", "A run is now watched.")
unwatched = namespace.signal("tinkex.recovery.unwatched", "A run is no longer watched.")
