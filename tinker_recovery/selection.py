"""Pure rules on checkpoints: which are usable, in which order (the order of a recovery's candidates
is built on them in ``candidates.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ._text import escape_text
from .errors import CheckpointStrategyNotSupported, InvalidCheckpointPath
from .models import Checkpoint, ParsedCheckpointTinkerPath

__all__ = ["as_checkpoint", "check_training_checkpoint", "newest_first", "ranked_by_score"]


def as_checkpoint(value: Any, now: datetime) -> Checkpoint | None:
    """Accept a Checkpoint, its JSON mapping, a tinker path string (its time: ``now``), or None.

    Raises TypeError for anything else, ValueError for a mapping or path that does not parse.
    """
    if value is None or isinstance(value, Checkpoint):
        return value
    if isinstance(value, Mapping):
        return Checkpoint.from_json(value)
    if isinstance(value, str):
        return Checkpoint.from_path(value, time=now)
    raise TypeError(
        f"last_checkpoint: expected a Checkpoint, a mapping or a path, got {type(value).__name__}"
    )


def check_training_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """Return ``checkpoint`` if a training client can load it, else raise InvalidCheckpointPath."""
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(checkpoint.tinker_path)
    except ValueError as error:
        raise InvalidCheckpointPath(str(error)) from None
    if parsed.checkpoint_type != "training" or checkpoint.checkpoint_type != "training":
        kind = checkpoint.checkpoint_type if parsed.checkpoint_type == "training" else parsed.checkpoint_type
        raise InvalidCheckpointPath(
            f"{checkpoint.tinker_path!r} is a {kind} checkpoint, not a training checkpoint"
        )
    return checkpoint


def _usable(checkpoints: list[Checkpoint], now: datetime, exclude: set[str]) -> list[Checkpoint]:
    return [
        cp
        for cp in checkpoints
        if cp.checkpoint_type == "training" and not cp.is_expired(now) and cp.tinker_path not in exclude
    ]


def newest_first(checkpoints: list[Checkpoint], now: datetime, exclude: set[str]) -> list[Checkpoint]:
    """Training checkpoints that have not expired at ``now`` and whose path is not in ``exclude``,
    newest first (the listed order kept among equal times)."""
    return sorted(_usable(checkpoints, now, exclude), key=lambda cp: cp.time, reverse=True)


def ranked_by_score(
    checkpoints: list[Checkpoint], now: datetime, exclude: set[str], best_by: Callable[[Checkpoint], float]
) -> list[Checkpoint]:
    """Usable training checkpoints, highest ``best_by`` score first (newest first among equals).

    Raises CheckpointStrategyNotSupported when ``best_by`` raises or scores NaN (no order is possible).
    """
    scored = []
    for cp in _usable(checkpoints, now, exclude):
        try:
            score = float(best_by(cp))
        except Exception as error:
            raise CheckpointStrategyNotSupported(
                f"best_by raised {type(error).__name__} on {escape_text(cp.tinker_path, 300)}: "
                f"{escape_text(error, 300)}"
            ) from error
        if math.isnan(score):
            raise CheckpointStrategyNotSupported(
                f"best_by scored {escape_text(cp.tinker_path, 300)} NaN; scores must be numbers"
            )
        scored.append((score, cp.time, cp))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [cp for _, _, cp in scored]
