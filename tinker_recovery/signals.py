"""The recovery signals: blinker named signals in a namespace owned by this package.

Each is named ``tinkex.recovery.<event>``. The sender is the Monitor or the Executor that saw the
event. Every payload holds ``run_id``, ``attempt`` (0 for monitor events), ``strategy`` and
``metadata``, plus ``checkpoint``, ``client`` and ``error`` where they apply, and ``reason`` (a short
text) on ``failed``, ``exhausted`` and ``poll_error``.

=====================  ==========================  ============================================
signal                 sent from                   extra payload
=====================  ==========================  ============================================
detected               monitor thread              checkpoint (the run's last, or None)
started                executor worker             (the attempt begins)
checkpoint_selected    executor worker             checkpoint
client_created         executor worker             checkpoint, client
completed              executor worker             checkpoint, client
failed                 executor worker, or the     error, reason, checkpoint (None if none chosen)
                       thread calling shutdown()
exhausted              executor worker, or the     error, reason
                       thread calling shutdown()
poll_error             monitor thread              error, reason
=====================  ==========================  ============================================

blinker holds receivers weakly by default: connect a lambda or a notebook's inner function with
``signal.connect(receiver, weak=False)`` or keep a reference to it. A receiver that raises is logged
with its traceback and skipped; the other receivers still run.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

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


def send_guarded(signal: NamedSignal, sender: Any, **payload: Any) -> None:
    """Send ``signal`` to each receiver in turn; a receiver that raises is logged and skipped."""
    if signal.is_muted or not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **payload)
        except Exception:
            log.error(
                "receiver %r of %s raised; ignored (run %s)",
                receiver,
                signal.name,
                payload.get("run_id"),
                exc_info=True,
            )

# Not recovery events, so not in ALL: the journal records them to know which runs a restarted
# watcher must follow. Payload: events.payload(...) plus ``reason`` ("monitor_run", "resumed",
# "recovered from <id>", "user", "dropped: ...").
watched = namespace.signal("tinkex.recovery.watched", "A run is now watched.")
unwatched = namespace.signal("tinkex.recovery.unwatched", "A run is no longer watched.")
