"""What the examples share: a demo policy, deadlines, waiting for signals and recoveries, and a
tiny training step for the official ``tinker`` SDK.

Used by ``tinker_recovery.examples.*``, ``examples/training_loop.py`` and ``examples/recovery.ipynb``;
not part of the library's API. The training helpers import ``tinker`` when called, so this module
imports without it.
"""

from __future__ import annotations

import argparse
import queue
import time
from collections.abc import Sequence
from typing import Any

import tinker_recovery as tr
from tinker_recovery import signals

__all__ = [
    "TINKER_INSTALL_HINT",
    "ExampleFailed",
    "Deadline",
    "demo_policy",
    "SignalLog",
    "wait_for_recovery",
    "positive_seconds",
    "import_tinker",
    "make_datums",
    "adam_params",
    "train_step",
    "checkpoint_name",
    "save_checkpoint",
    "StepLedger",
]

TINKER_INSTALL_HINT = 'pip install "tinker-recovery[tinker]"'


class ExampleFailed(Exception):
    """An example could not finish; the message is the one line it prints before exiting non-zero."""


class Deadline:
    """A point ``seconds`` from now on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def demo_policy(**overrides: Any) -> tr.Policy:
    """An enabled policy that polls every 100 ms and retries within a second: for demos on FakeTinker."""
    settings: dict[str, Any] = {
        "enabled": True,
        "poll_interval_ms": 100,
        "backoff_ms": 100,
        "max_backoff_ms": 500,
        "jitter": "none",
    }
    return tr.Policy(**{**settings, **overrides})


class SignalLog:
    """Collects the recovery signals sent by ``senders`` (a Monitor, an Executor) into a queue.

    The receivers run on the library's threads; ``wait_for`` hands the events to the calling thread
    in the order they were sent. Each receiver is connected with ``weak=False``: blinker holds
    receivers weakly by default, and a closure like these would otherwise be dropped as soon as
    ``__init__`` returns. ``close()`` (or leaving the ``with`` block) disconnects them.
    """

    def __init__(self, *senders: Any) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []  # every event taken by wait_for, in order
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._disconnects = [signals.connect_all(self._record, sender=sender) for sender in senders]

    def __enter__(self) -> SignalLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect every receiver; safe to call twice."""
        for disconnect in self._disconnects:
            disconnect()

    def _record(self, event: str, _sender: Any, **payload: Any) -> None:
        self._queue.put((event, payload))

    @property
    def names(self) -> list[str]:
        return [event for event, _ in self.events]

    def wait_for(self, wanted: Sequence[str], deadline: Deadline) -> tuple[str, dict[str, Any]]:
        """Return the next event named in ``wanted`` (earlier ones are kept in ``events``).

        Raises ExampleFailed when ``deadline`` passes first.
        """
        while True:
            try:
                event, payload = self._queue.get(timeout=deadline.remaining())
            except queue.Empty:
                seen = ", ".join(self.names) or "none"
                raise ExampleFailed(f"timed out after {deadline.seconds:g} s waiting for "
                                    f"{' or '.join(wanted)} (signals so far: {seen})") from None
            self.events.append((event, payload))
            if event in wanted:
                return event, payload


def wait_for_recovery(handle: tr.RunHandle, deadline: Deadline) -> tr.Recovery:
    """Have the monitor poll the run now, then block until a recovery the loop has not taken is there.

    Raises ExampleFailed when recovery was given up (``handle.error``) or ``deadline`` passes first.
    """
    handle.poll_now()
    try:
        return handle.wait_for_recovery(timeout=deadline.remaining())
    except TimeoutError:
        raise ExampleFailed(f"no recovery of {handle.run_id} within {deadline.seconds:g} s") from None
    except Exception as error:
        raise ExampleFailed(f"recovery of {handle.run_id} was given up: {error}") from None


# --- training with the official SDK -------------------------------------------------------------


def import_tinker() -> Any:
    """The official ``tinker`` module; ExampleFailed naming the install command if it is missing."""
    try:
        import tinker
    except ImportError:
        raise ExampleFailed(f"the official tinker SDK is not installed: {TINKER_INSTALL_HINT}") from None
    return tinker


def make_datums() -> list[Any]:
    """Two tiny next-token examples, the same at every step (so losses are comparable)."""
    types = import_tinker().types

    def datum(tokens: list[int]) -> Any:
        return types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        )

    return [datum([1, 2, 3, 4, 5, 6]), datum([7, 8, 9, 10])]


def adam_params(learning_rate: float = 0.05) -> Any:
    return import_tinker().types.AdamParams(learning_rate=learning_rate)


def train_step(client: Any, datums: list[Any], adam: Any) -> float:
    """One optimizer step (``forward_backward`` then ``optim_step``); return the summed loss.

    Both requests are submitted before either result is read. Raises what the SDK raises, e.g.
    ``tinker.RequestFailedError`` when the service refuses a corrupted run.
    """
    futures = [client.forward_backward(datums, "cross_entropy"), client.optim_step(adam)]
    results, errors = [], []
    for future in futures:  # read both, so no failed future is left unread
        try:
            results.append(future.result())
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]
    return float(results[0].metrics["loss:sum"])


def checkpoint_name(step: int) -> str:
    """``step-000120``: the checkpoint saved after 120 optimizer steps (see ``Checkpoint.step``)."""
    return f"step-{step:06d}"


def save_checkpoint(client: Any, step: int) -> str:
    """Save weights and optimizer state as ``checkpoint_name(step)``; return its ``tinker://`` path."""
    return str(client.save_state(checkpoint_name(step)).result().path)


class StepLedger:
    """What a training loop applied, to check that a recovery skipped and repeated no step.

    - ``applied(step, loss)``: a step that succeeded on the current run.
    - ``restored(step)``: a recovery restored the checkpoint saved after ``step`` steps; the steps
      applied after it were lost with the corrupted run.
    - ``history``: the (step, loss) pairs the current weights went through, in order.
    - ``since_restore``: the steps run since the last restore.
    """

    def __init__(self) -> None:
        self.history: list[tuple[int, float]] = []
        self.since_restore: list[int] = []
        self.restored_at: int | None = None

    def applied(self, step: int, loss: float) -> None:
        self.history.append((step, loss))
        self.since_restore.append(step)

    def restored(self, step: int) -> None:
        del self.history[step:]
        self.since_restore = []
        self.restored_at = step

    def problems(self, n_steps: int, reference_losses: Sequence[float] | None = None) -> list[str]:
        """Why the history is not steps 0..n_steps-1 applied once each, in order; [] when it is.

        With ``reference_losses`` (an uninterrupted run on the same data), each step's loss must
        equal it exactly: true only on a deterministic service such as FakeTinker.
        """
        found = []
        steps = [step for step, _ in self.history]
        if steps != list(range(n_steps)):
            found.append(f"steps applied {steps}, expected 0..{n_steps - 1} once each")
        if self.restored_at is not None and self.since_restore != list(range(self.restored_at, n_steps)):
            found.append(f"after restoring step {self.restored_at} the loop ran {self.since_restore}")
        if reference_losses is not None:
            for step, loss in self.history:
                if step < len(reference_losses) and loss != reference_losses[step]:
                    found.append(f"step {step}: loss {loss!r} differs from the uninterrupted run's "
                                 f"{reference_losses[step]!r}")
        return found
