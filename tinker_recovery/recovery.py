"""What a finished recovery hands back."""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from ._text import escape_text
from .models import Checkpoint

__all__ = ["Recovery", "new_recovery_id"]


def new_recovery_id() -> str:
    """A fresh recovery id: 32 lowercase hex digits (a random UUID), safe in paths and metadata."""
    return uuid.uuid4().hex


@attrs.frozen
class Recovery:
    """One completed recovery.

    - ``run_id``: the corrupted run; ``new_run_id``: the run the restored client trains (its
      ``model_id``, or None if the client has none).
    - ``checkpoint``: the training checkpoint restored (possibly one of an earlier run of the lineage,
      when the corrupted run had none loadable); ``attempts``: attempts it took (>= 1).
    - ``client`` / ``old_client``: the restored training client, and the one passed as
      ``metadata["training_client"]`` (or None).
    - ``recovery_id``: one id per detected corruption, shared by its attempts and written to the
      restored run's ``user_metadata["tinker_recovery.recovery_id"]``. Default: a fresh id.
    - ``lineage_id``: the run id the lineage started from. Default: ``run_id``.
    - ``sampler_path``: the ``tinker://.../sampler_weights/<name>`` saved with the checkpoint, when
      the service lists one under the same name; else None.
    """

    run_id: str
    new_run_id: str | None
    checkpoint: Checkpoint
    client: Any = attrs.field(repr=False)
    old_client: Any = attrs.field(repr=False)
    attempts: int
    recovery_id: str = attrs.field(factory=new_recovery_id, kw_only=True)
    lineage_id: str = attrs.field(
        default=attrs.Factory(lambda self: self.run_id, takes_self=True), kw_only=True
    )
    sampler_path: str | None = attrs.field(default=None, kw_only=True)

    @property
    def checkpoint_name(self) -> str:
        """The restored checkpoint's name, e.g. ``step-000120``."""
        return self.checkpoint.name

    @property
    def step(self) -> int | None:
        """The training step the checkpoint was saved at (see ``Checkpoint.step``), or None.

        By convention a checkpoint named ``step-N`` is saved after N optimizer steps, so the loop
        resumes at step N: nothing is skipped and nothing is repeated.
        """
        return self.checkpoint.step

    def sampling_client(self, name: str | None = None, *, from_checkpoint: bool = False) -> Any:
        """A fresh sampling client of the restored weights, for RL loops and sampling evaluations.

        By default the restored client saves its weights for sampling (the official SDK's
        ``TrainingClient.save_weights_and_get_sampling_client(name)``; ``name`` None lets the
        service pick one); the weights are exactly the checkpoint's, since nothing has trained since
        the restore unless the loop already did. ``from_checkpoint=True`` instead samples from the
        checkpoint's own ``sampler_path`` (``TrainingClient.create_sampling_client(path)``), without
        a save; ValueError when the checkpoint has none. A future-like answer (tinker >= 0.38) is
        resolved. Raises TypeError when the client lacks the SDK method; the service's own errors
        pass through unchanged.
        """
        if from_checkpoint:
            if self.sampler_path is None:
                raise ValueError(
                    f"recovery of {self.run_id}: checkpoint {escape_text(self.checkpoint.tinker_path, 300)} "
                    "has no sampler_path"
                )
            method_name = "create_sampling_client"
            args: tuple[str | None, ...] = (self.sampler_path,)
        else:
            method_name, args = "save_weights_and_get_sampling_client", (name,)
        method = getattr(self.client, method_name, None)
        if not callable(method):
            raise TypeError(f"the restored client ({type(self.client).__name__}) has no {method_name}()")
        value = method(*args)
        result = getattr(value, "result", None)
        return result() if callable(result) else value

