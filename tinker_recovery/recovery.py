"""What a finished recovery hands back."""

from __future__ import annotations

from typing import Any

import attrs

from .models import Checkpoint

__all__ = ["Recovery"]


@attrs.frozen
class Recovery:
    """One completed recovery.

    ``run_id`` is the corrupted run; ``new_run_id`` the run the restored client trains (its
    ``model_id``, or None if the client has none); ``attempts`` counts the attempts it took.
    """

    run_id: str
    new_run_id: str | None
    checkpoint: Checkpoint
    client: Any = attrs.field(repr=False)
    old_client: Any = attrs.field(repr=False)
    attempts: int

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
