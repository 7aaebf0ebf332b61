"""The checkpoints one recovery attempt tries, in order: the first choice, then the fallbacks.

``Candidates`` is a lazy iterable: it lists checkpoints (a REST call) only when the consumer asks
for the next candidate, that is when the previous one could not be loaded. It does no loading and
sends no signal; the executor consumes it and decides, per candidate, whether to go on.

Order for ``"latest"``:

1. the run's last checkpoint (``given``, else ``run.last_checkpoint``, else the run fetched);
2. the run's other training checkpoints, newest first;
3. up the lineage: the checkpoint the run was restored from (its *source*), then the source run's
   checkpoints older than the source (by time; by step when the source is no longer listed), newest
   first; then that run's own source, and so on (at most ``MAX_LINEAGE_DEPTH`` runs up).

Steps 2 and 3 together yield at most ``policy.max_fallbacks`` checkpoints. Expired checkpoints, a
source that its run no longer lists (deleted) and checkpoints already yielded are skipped without
being counted. ``"best"`` yields the top-scored
checkpoint and then the next ``max_fallbacks`` by score; ``Specific`` yields its one path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from ._text import escape_text
from .errors import MissingCheckpoint
from .models import Checkpoint, ParsedCheckpointTinkerPath, TrainingRun
from .policy import Policy, Specific
from .selection import check_training_checkpoint, newest_first, ranked_by_score

__all__ = ["Candidates", "SOURCE_KEY", "LINEAGE_KEY", "RECOVERY_KEY", "MAX_LINEAGE_DEPTH"]

log = logging.getLogger("tinker_recovery.candidates")
_PATH_LIMIT = 300  # characters of a server-given path or id in a log line

SOURCE_KEY = "tinker_recovery.source_checkpoint"
"""``user_metadata`` key of a restored run: the tinker path of the checkpoint it was restored from."""
LINEAGE_KEY = "tinker_recovery.lineage_id"
"""``user_metadata`` key of a restored run: the run id its lineage started from."""
RECOVERY_KEY = "tinker_recovery.recovery_id"
"""``user_metadata`` key of a restored run: the id of the recovery that created it."""

MAX_LINEAGE_DEPTH = 16
"""How many runs up the lineage the fallback climbs at most (a guard against a cycle in metadata)."""

SourceOf = Callable[[str, "TrainingRun | None"], "str | None"]


class Candidates:
    """The candidates of one attempt (see the module docstring), iterated once.

    - ``run_id``: the corrupted run. ``given`` / ``run``: what the caller already knows of it.
    - ``fetch_run(run_id)``, ``list_checkpoints(run_id)``: REST look-ups, or None without REST access.
    - ``source_of(run_id, run)``: the tinker path ``run_id`` was restored from, or None (the executor
      answers from its memory, else from ``run.user_metadata[SOURCE_KEY]``).
    - ``now``: the wall-clock time that decides expiry.

    Iterating raises MissingCheckpoint when not one candidate can be found, InvalidCheckpointPath
    when the first choice is not a training checkpoint, and whatever a REST look-up raises.
    ``listed`` keeps every listing made, by run id (for ``sampler_path``).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        run_id: str,
        given: Checkpoint | None,
        run: TrainingRun | None,
        fetch_run: Callable[[str], TrainingRun] | None,
        list_checkpoints: Callable[[str], list[Checkpoint]] | None,
        source_of: SourceOf,
        now: datetime,
    ) -> None:
        self._policy = policy
        self._run_id = run_id
        self._given = given
        self._run = run
        self._fetch_run = fetch_run
        self._list = list_checkpoints
        self._source_of = source_of
        self._now = now
        self.listed: dict[str, list[Checkpoint]] = {}
        self.yielded: list[Checkpoint] = []

    def __iter__(self) -> Iterator[Checkpoint]:
        seen: set[str] = set()
        for candidate in self._ordered():
            if candidate.tinker_path in seen:
                continue
            seen.add(candidate.tinker_path)
            if candidate.is_expired(self._now):
                log.warning(
                    "run %s: checkpoint %s expired at %s; skipped",
                    self._run_id,
                    escape_text(candidate.tinker_path, _PATH_LIMIT),
                    candidate.expires_at,
                )
                continue
            self.yielded.append(candidate)
            yield candidate
        if not self.yielded:
            raise MissingCheckpoint(self._nothing_found())

    @property
    def run(self) -> TrainingRun | None:
        """The corrupted run as known now: given, or fetched for the first choice; None if neither."""
        return self._run

    def sampler_path(self, checkpoint: Checkpoint) -> str | None:
        """The sampler checkpoint saved under ``checkpoint``'s name in the same run, when a listing
        made for the fallbacks or the run's ``last_sampler_checkpoint`` shows one; no REST call of
        its own. None otherwise."""
        try:
            owner = ParsedCheckpointTinkerPath.from_tinker_path(checkpoint.tinker_path).training_run_id
        except ValueError:
            return None
        for listed in self.listed.get(owner, []):
            if listed.checkpoint_type == "sampler" and listed.name == checkpoint.name:
                return listed.tinker_path
        if self._run is not None and self._run.training_run_id == owner:
            sampler = self._run.last_sampler_checkpoint
            if sampler is not None and sampler.name == checkpoint.name:
                return sampler.tinker_path
        return None

    # --- the order ------------------------------------------------------------------------------

    def _listing(self, run_id: str) -> list[Checkpoint]:
        if self._list is None:
            return []
        if run_id not in self.listed:
            self.listed[run_id] = list(self._list(run_id))
        return self.listed[run_id]

    def _ordered(self) -> Iterator[Checkpoint]:
        strategy = self._policy.checkpoint_strategy
        if isinstance(strategy, Specific):
            yield check_training_checkpoint(Checkpoint.from_path(strategy.path, time=self._now))
            return
        if strategy == "best":
            yield from self._best()
            return
        first = self._first()
        if first is not None:
            yield check_training_checkpoint(first)
        budget = self._policy.max_fallbacks
        if budget == 0:
            return
        first_path = None if first is None else first.tinker_path
        counted: set[str] = set()
        for fallback in self._fallbacks(exclude=set() if first_path is None else {first_path}):
            yield fallback  # __iter__ skips (and logs) the expired and the already yielded: not counted
            path = fallback.tinker_path
            if path == first_path or path in counted or fallback.is_expired(self._now):
                continue
            counted.add(path)
            budget -= 1
            if budget == 0:
                return

    def _best(self) -> Iterator[Checkpoint]:
        best_by = self._policy.best_by
        if self._list is None or best_by is None:
            raise MissingCheckpoint(
                "strategy 'best' needs REST access (a config or RestClient) to list checkpoints"
            )
        ranked = ranked_by_score(self._listing(self._run_id), self._now, set(), best_by)
        yield from ranked[: 1 + self._policy.max_fallbacks]

    def _first(self) -> Checkpoint | None:
        if self._given is not None:
            return self._given
        if self._run is None and self._fetch_run is not None:
            self._run = self._fetch_run(self._run_id)
        return None if self._run is None else self._run.last_checkpoint

    def _fallbacks(self, exclude: set[str]) -> Iterator[Checkpoint]:
        """The run's other checkpoints, then up the lineage."""
        yield from newest_first(self._listing(self._run_id), self._now, exclude)
        run_id, run = self._run_id, self._run
        for _ in range(MAX_LINEAGE_DEPTH):
            source_path = self._source_of(run_id, run)
            if source_path is None:
                return
            try:
                parent = ParsedCheckpointTinkerPath.from_tinker_path(source_path).training_run_id
            except ValueError:
                log.warning(
                    "run %s: source checkpoint %s is not a tinker path; lineage not followed",
                    run_id,
                    escape_text(repr(source_path), _PATH_LIMIT),
                )
                return
            listing = self._listing(parent)
            source = next((cp for cp in listing if cp.tinker_path == source_path), None)
            log.info(
                "run %s: going up the lineage to %s", self._run_id, escape_text(source_path, _PATH_LIMIT)
            )
            if source is not None:
                yield source
                older = [cp for cp in listing if cp.time < source.time]
            else:
                source = Checkpoint.from_path(source_path, time=self._now)
                if self._list is None:  # nothing listed: try the path as it is
                    yield source
                else:  # listed without it: it is gone (deleted); skipped, like an expired one
                    log.warning(
                        "run %s: source checkpoint %s is gone; older ones of %s are tried",
                        self._run_id,
                        escape_text(source_path, _PATH_LIMIT),
                        escape_text(parent, _PATH_LIMIT),
                    )
                older = [
                    cp
                    for cp in listing
                    if source.step is None or (cp.step is not None and cp.step < source.step)
                ]
            yield from newest_first(older, self._now, {source_path})
            run_id, run = parent, None

    def _nothing_found(self) -> str:
        if self._policy.strategy_name == "best":
            return "no unexpired training checkpoint to score for strategy 'best'"
        if self._run is None and self._fetch_run is None and self._given is None:
            return f"run {self._run_id} has no last_checkpoint and there is no REST access to look one up"
        return f"run {self._run_id} has no loadable training checkpoint (nor has its lineage)"
