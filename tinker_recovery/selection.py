"""Choosing the checkpoints a recovery attempt tries, in order, for each strategy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from .errors import CheckpointStrategyNotSupported, InvalidCheckpointPath, MissingCheckpoint
from .models import Checkpoint, ParsedCheckpointTinkerPath, TrainingRun
from .policy import Policy, Specific

__all__ = ["as_checkpoint", "check_training_checkpoint", "newest_first", "ranked_by_score", "first_choice"]

log = logging.getLogger("tinker_recovery.selection")


def as_checkpoint(value: Any, now: datetime) -> Checkpoint | None:
    """Accept a Checkpoint, its JSON mapping, a tinker path string, or None."""
    if value is None or isinstance(value, Checkpoint):
        return value
    if isinstance(value, Mapping):
        return Checkpoint.from_json(value)
    if isinstance(value, str):
        return Checkpoint.from_path(value, time=now)
    raise TypeError(f"last_checkpoint: expected a Checkpoint, a mapping or a path, got {type(value).__name__}")


def check_training_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """Return ``checkpoint`` if a training client can load it, else raise InvalidCheckpointPath."""
    try:
        parsed = ParsedCheckpointTinkerPath.from_tinker_path(checkpoint.tinker_path)
    except ValueError as error:
        raise InvalidCheckpointPath(str(error)) from None
    if parsed.checkpoint_type != "training" or checkpoint.checkpoint_type != "training":
        raise InvalidCheckpointPath(
            f"{checkpoint.tinker_path!r} is a {checkpoint.checkpoint_type} checkpoint, not a training checkpoint"
        )
    return checkpoint


def _usable(checkpoints: list[Checkpoint], now: datetime, exclude: set[str]) -> list[Checkpoint]:
    return [
        cp
        for cp in checkpoints
        if cp.checkpoint_type == "training" and not cp.is_expired(now) and cp.tinker_path not in exclude
    ]


def newest_first(checkpoints: list[Checkpoint], now: datetime, exclude: set[str]) -> list[Checkpoint]:
    """Training checkpoints that have not expired and are not in ``exclude``, newest first."""
    return sorted(_usable(checkpoints, now, exclude), key=lambda cp: cp.time, reverse=True)


def ranked_by_score(
    checkpoints: list[Checkpoint], now: datetime, exclude: set[str], best_by: Callable[[Checkpoint], float]
) -> list[Checkpoint]:
    """Usable training checkpoints, highest ``best_by`` score first (newest first among equals)."""
    scored = []
    for cp in _usable(checkpoints, now, exclude):
        try:
            score = float(best_by(cp))
        except Exception as error:
            raise CheckpointStrategyNotSupported(
                f"best_by raised {type(error).__name__} on {cp.tinker_path}: {error}"
            ) from error
        scored.append((score, cp.time, cp))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [cp for _, _, cp in scored]


def first_choice(
    policy: Policy,
    *,
    given: Checkpoint | None,
    run: TrainingRun | None,
    fetch_run: Callable[[], TrainingRun] | None,
    list_checkpoints: Callable[[], list[Checkpoint]] | None,
    now: datetime,
) -> Checkpoint | None:
    """The checkpoint an attempt tries first, or None when it must be found by listing.

    ``Specific``: its path. ``latest``: ``given``, else ``run.last_checkpoint``, else the run
    fetched through ``fetch_run``. ``best``: the top-scored listed checkpoint.
    Raises MissingCheckpoint when nothing can be found.
    """
    strategy = policy.checkpoint_strategy
    if isinstance(strategy, Specific):
        return Checkpoint.from_path(strategy.path, time=now)
    if strategy == "best":
        if list_checkpoints is None or policy.best_by is None:
            raise MissingCheckpoint("strategy 'best' needs REST access (a config or RestClient) to list checkpoints")
        ranked = ranked_by_score(list_checkpoints(), now, set(), policy.best_by)
        if not ranked:
            raise MissingCheckpoint("no unexpired training checkpoint to score for strategy 'best'")
        return ranked[0]
    if given is not None:
        return given
    if run is not None and run.last_checkpoint is not None:
        return run.last_checkpoint
    if fetch_run is None:
        raise MissingCheckpoint("the run has no last_checkpoint and there is no REST access to look one up")
    fetched = fetch_run()
    if fetched.last_checkpoint is None:
        raise MissingCheckpoint(f"run {fetched.training_run_id} has no training checkpoint")
    return fetched.last_checkpoint
