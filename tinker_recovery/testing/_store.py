"""Training runs and their checkpoints, and the record of every load: FakeTinker's durable state.

Not thread-safe on its own: ``FakeState`` holds its lock around every call. Times are epoch seconds
read from the injected ``FakeClock``; a checkpoint whose ``expires_at`` has passed is deleted the
next time its run is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from ._clock import FakeClock
from ._common import ApiProblem, iso, parse_path
from ._model import BigramModel, Snapshot

__all__ = ["Load", "Run", "RunStore", "StoredCheckpoint"]

_OWNER = "fake-owner"


@attrs.define(eq=False)
class StoredCheckpoint:
    """One checkpoint: ``kind`` is ``"training"`` or ``"sampler"``; ``order`` is global creation order."""

    run_id: str
    kind: str
    name: str
    created_at: float
    expires_at: float | None
    user_metadata: dict[str, str] | None
    snapshot: Snapshot
    order: int

    @property
    def checkpoint_id(self) -> str:
        return f"{'weights' if self.kind == 'training' else 'sampler_weights'}/{self.name}"

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.run_id}/{self.checkpoint_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_type": self.kind,
            "time": iso(self.created_at),
            "tinker_path": self.tinker_path,
            "size_bytes": self.snapshot.size_bytes,
            "public": False,
            "user_metadata": self.user_metadata,
            "expires_at": None if self.expires_at is None else iso(self.expires_at),
        }


@attrs.frozen
class Load:
    """One load FakeTinker carried out.

    - ``checkpoint``: the tinker path loaded; ``source_run_id``: the run that saved it.
    - ``run_id``: the run the weights went into (new for a training client made from state).
    - ``optimizer``: whether the Adam state was restored too.
    - ``time``: epoch seconds on FakeTinker's clock.
    """

    checkpoint: str
    source_run_id: str
    run_id: str
    optimizer: bool
    time: float

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "source_run_id": self.source_run_id,
            "run_id": self.run_id,
            "optimizer": self.optimizer,
            "time": iso(self.time),
        }


@attrs.define(eq=False)
class Run:
    """A training run: its LoRA settings, metadata, checkpoints and (lazily made) model."""

    run_id: str
    base_model: str
    lora_rank: int
    user_metadata: dict[str, str] | None
    last_request_time: float
    origin: Snapshot  # the state the model starts from
    origin_optimizer: bool = True
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True
    creation: tuple[str, str | None, str] | None = None  # (kind, loaded path, request_id), for replays
    source: Load | None = None  # the load that created this run or last replaced its weights
    model: BigramModel | None = None
    corrupted: bool = False
    saves: int = 0  # training-state saves (save_state) carried out, for corrupt_after_saves
    checkpoints: dict[str, StoredCheckpoint] = attrs.Factory(dict)  # by checkpoint_id, oldest first

    @property
    def session_id(self) -> str:
        return self.run_id.rsplit(":train:", 1)[0]

    def ensure_model(self) -> BigramModel:
        if self.model is None:
            self.model = BigramModel(self.origin, optimizer=self.origin_optimizer)
        return self.model


class RunStore:
    """Every run (oldest first), their checkpoints, and the log of loads."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock
        self._runs: dict[str, Run] = {}
        self._loads: list[Load] = []
        self._next_order = 1

    # --- runs -----------------------------------------------------------------------------------

    def add(self, run_id: str, **fields: Any) -> Run:
        """Register a new run (``fields``: Run's other attributes). The caller checks the id is free."""
        run = Run(run_id=run_id, last_request_time=self._clock.time(), **fields)
        self._runs[run_id] = run
        return run

    def find(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def get(self, run_id: Any) -> Run:
        """The run; ApiProblem(404) when unknown."""
        run = self._runs.get(run_id) if isinstance(run_id, str) else None
        if run is None:
            raise ApiProblem(404, f"training run {run_id!r} not found")
        return run

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        return list(self._runs)

    def touch(self, run: Run) -> None:
        run.last_request_time = self._clock.time()

    # --- checkpoints ----------------------------------------------------------------------------

    def live(self, run: Run) -> list[StoredCheckpoint]:
        """The run's unexpired checkpoints, oldest first (expired ones are deleted here)."""
        now = self._clock.time()
        for checkpoint in [
            c for c in run.checkpoints.values() if c.expires_at is not None and c.expires_at <= now
        ]:
            del run.checkpoints[checkpoint.checkpoint_id]
        return list(run.checkpoints.values())

    def checkpoint(self, path: Any, *, training_only: bool) -> StoredCheckpoint:
        """The live checkpoint at ``path``; ApiProblem 400 (malformed, or a sampler path when
        ``training_only``) or 404 (unknown run or checkpoint)."""
        parsed = parse_path(path)
        if training_only and parsed.checkpoint_type != "training":
            raise ApiProblem(400, f"{path!r} is not a training checkpoint (tinker://<run_id>/weights/<name>)")
        run = self.get(parsed.training_run_id)
        found = {c.checkpoint_id: c for c in self.live(run)}.get(parsed.checkpoint_id)
        if found is None:
            raise ApiProblem(404, f"checkpoint {path!r} not found")
        return found

    def save(
        self,
        run: Run,
        kind: str,
        name: str,
        snapshot: Snapshot,
        ttl_seconds: float | None,
        user_metadata: dict[str, str] | None,
    ) -> StoredCheckpoint:
        """Add (or replace) a checkpoint; it becomes the run's newest."""
        now = self._clock.time()
        checkpoint = StoredCheckpoint(
            run_id=run.run_id,
            kind=kind,
            name=name,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + float(ttl_seconds),
            user_metadata=user_metadata,
            snapshot=snapshot,
            order=self._next_order,
        )
        self._next_order += 1
        run.checkpoints.pop(checkpoint.checkpoint_id, None)
        run.checkpoints[checkpoint.checkpoint_id] = checkpoint
        return checkpoint

    def delete(self, run_id: Any, checkpoint_id: str) -> None:
        """Delete a live checkpoint; ApiProblem(404) when the run or checkpoint is unknown."""
        run = self.get(run_id)
        self.live(run)
        if run.checkpoints.pop(checkpoint_id, None) is None:
            raise ApiProblem(404, f"checkpoint {checkpoint_id!r} of run {run_id!r} not found")

    def every_checkpoint(self) -> list[StoredCheckpoint]:
        """Every live checkpoint of every run, in creation order."""
        return sorted((c for run in self._runs.values() for c in self.live(run)), key=lambda c: c.order)

    # --- loads ----------------------------------------------------------------------------------

    def record_load(self, checkpoint: StoredCheckpoint, into: Run, optimizer: bool) -> Load:
        load = Load(
            checkpoint=checkpoint.tinker_path,
            source_run_id=checkpoint.run_id,
            run_id=into.run_id,
            optimizer=optimizer,
            time=self._clock.time(),
        )
        self._loads.append(load)
        into.source = load
        return load

    def loads(self, source_run_id: str | None = None) -> list[Load]:
        """Loads carried out, oldest first; only those of ``source_run_id``'s checkpoints if given."""
        return [load for load in self._loads if source_run_id is None or load.source_run_id == source_run_id]

    # --- views ----------------------------------------------------------------------------------

    def run_json(self, run: Run) -> dict[str, Any]:
        """The run as ``GET /api/v1/training_runs/{id}`` shows it."""
        live = self.live(run)
        last = next((c for c in reversed(live) if c.kind == "training"), None)
        last_sampler = next((c for c in reversed(live) if c.kind == "sampler"), None)
        return {
            "training_run_id": run.run_id,
            "base_model": run.base_model,
            "model_owner": _OWNER,
            "is_lora": True,
            "corrupted": run.corrupted,
            "lora_rank": run.lora_rank,
            "last_request_time": iso(run.last_request_time),
            "last_checkpoint": None if last is None else last.to_json(),
            "last_sampler_checkpoint": None if last_sampler is None else last_sampler.to_json(),
            "user_metadata": run.user_metadata,
        }

    def admin_json(self, run: Run) -> dict[str, Any]:
        """``run_json`` plus what only FakeTinker knows: where the run's weights came from."""
        source = run.source
        return {
            **self.run_json(run),
            "source_checkpoint": None if source is None else source.checkpoint,
            "source_optimizer": None if source is None else source.optimizer,
            "load_weights_count": len(self.loads(run.run_id)),
        }
