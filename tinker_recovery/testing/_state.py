"""FakeTinker's state behind one lock: the facade the HTTP layer (``_api.py``) and FakeTinker call.

Each part has one job and is used only under this lock:

- ``RunStore`` (``_store.py``): training runs, checkpoints (with expiry) and the log of loads;
- ``FutureTable`` and one ``SeqOrder`` per model (``_futures.py``): request ids, results, and the
  ``seq_id`` order in which a model's operations run, gaps timed on the injected clock;
- ``Sessions`` (``_sessions.py``): client sessions and sampling sessions;
- ``ModelOps`` (``_ops.py``): what each operation does to a model, and sampling.

Operations the real service runs asynchronously (create_model, forward_backward, optim_step, the
saves and loads, asample) return a request id at once; ``retrieve`` hands out the result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from ._clock import FakeClock
from ._common import ApiProblem, Result, dump, failure, field, string_map
from ._futures import FutureTable, SeqOrder
from ._model import Snapshot, initial_snapshot
from ._ops import ModelOps, parse_sample_request, run_sample
from ._protobuf import ForwardBackwardRequest
from ._sessions import Sessions
from ._store import Load, Run, RunStore

__all__ = ["FakeState"]

logger = logging.getLogger("tinker_recovery.testing.fake_server")

MAX_SEEDED_CHECKPOINTS = 1000
"""Most checkpoints of one kind ``add_run`` seeds: a bound so one admin request cannot exhaust memory."""
MAX_LORA_RANK = 1024
"""Largest ``lora_rank`` a run accepts (the tiny model's weights are sized by it)."""
MAX_TTL_S = 100 * 365 * 86400.0
"""Longest checkpoint time-to-live, about a century: past it ``expires_at`` would overflow a datetime."""


class FakeState:
    """All state of one FakeTinker. Thread-safe; every public method takes the lock.

    ``clock`` gives timestamps, checkpoint expiry and the seq_id gap time-out;
    ``seq_gap_timeout_s`` is how long queued operations wait for a missing ``seq_id``;
    ``corrupt_after_saves``: see ``FakeTinker``.
    """

    def __init__(
        self,
        *,
        seed: int,
        clock: FakeClock,
        seq_gap_timeout_s: float = 2.0,
        max_futures: int = 100_000,
        corrupt_after_saves: int | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seed = seed
        self._clock = clock
        self._gap_timeout_s = seq_gap_timeout_s
        self._store = RunStore(clock)
        self._futures = FutureTable(max_futures)
        self._sessions = Sessions(seed)
        self._ops = ModelOps(self._store, self._sessions, corrupt_after_saves=corrupt_after_saves)
        self._orders: dict[str, SeqOrder] = {}
        self._blocked: set[str] = set()  # run ids whose queue waits for a missing seq_id
        self._initial: dict[int, Snapshot] = {}
        self._seed_session: str | None = None
        self._seed_next_seq = 0
        self._stopping = False

    # --- helpers (lock held) --------------------------------------------------------------------

    def _initial_snapshot(self, lora_seed: int) -> Snapshot:
        snapshot = self._initial.get(lora_seed)
        if snapshot is None:
            snapshot = self._initial[lora_seed] = initial_snapshot(self._seed * 1_000_003 + lora_seed)
        return snapshot

    def _session_and_seq(self, body: Mapping[str, Any], seq_name: str = "model_seq_id") -> tuple[str, int]:
        session_id = field(body, "session_id", str)
        seq = field(body, seq_name, int)
        if not self._sessions.exists(session_id):
            raise ApiProblem(404, f"session {session_id!r} not found")
        if seq < 0:
            raise ApiProblem(400, f"{seq_name} must be >= 0")
        return session_id, seq

    def _replay_or_conflict(self, model_id: str, kind: str, path: str | None) -> str | None:
        run = self._store.find(model_id)
        if run is None:
            return None
        if run.creation is not None and run.creation[:2] == (kind, path):
            return run.creation[2]  # a retried submission: same future
        raise ApiProblem(400, f"model {model_id!r} already exists")

    def _submit(self, run: Run, seq_id: Any, kind: str, payload: Any) -> str:
        if seq_id is None:  # unordered: run now
            return self._futures.new(self._ops.run(run, kind, payload))
        if not isinstance(seq_id, int) or isinstance(seq_id, bool):
            raise ApiProblem(400, "seq_id must be an integer")
        order = self._orders.setdefault(run.run_id, SeqOrder(self._gap_timeout_s))
        submitted = order.submit(seq_id, kind, self._futures.new, payload)
        if submitted.refusal is not None:
            return self._futures.new(failure(submitted.refusal))
        assert submitted.request_id is not None
        self._drain(run, order)
        return submitted.request_id

    def _drain(self, run: Run, order: SeqOrder) -> None:
        for queued in order.ready(self._clock.monotonic()):
            self._futures.resolve(queued.request_id, self._ops.run(run, queued.kind, queued.payload))
        if order.gap_expiry() is None:
            self._blocked.discard(run.run_id)
        else:
            self._blocked.add(run.run_id)
        self._changed.notify_all()

    def _skip_stale_gaps(self) -> float | None:
        """Skip expired gaps; return the (clock) time the next one expires, if any."""
        now = self._clock.monotonic()
        next_expiry = None
        for run_id in list(self._blocked):
            order = self._orders[run_id]
            skipped = order.skip_gap(now)
            if skipped is not None:
                logger.debug("FakeTinker skips seq_id %d..%d of %s", skipped[0], skipped[1], run_id)
                self._drain(self._store.get(run_id), order)
            expiry = order.gap_expiry()
            if expiry is not None and (next_expiry is None or expiry < next_expiry):
                next_expiry = expiry
        return next_expiry

    # --- sessions -------------------------------------------------------------------------------

    def create_session(self) -> str:
        with self._lock:
            return self._sessions.create()

    def has_session(self, session_id: Any) -> bool:
        with self._lock:
            return self._sessions.exists(session_id)

    # --- model creation (not ordered by seq_id) -------------------------------------------------

    def create_model(self, body: Mapping[str, Any]) -> str:
        with self._lock:
            session_id, model_seq_id = self._session_and_seq(body)
            base_model = field(body, "base_model", str)
            lora = field(body, "lora_config", dict, required=False) or {}
            rank = lora.get("rank", 32)
            seed = lora.get("seed")
            if not isinstance(rank, int) or rank < 1 or (seed is not None and not isinstance(seed, int)):
                raise ApiProblem(400, "lora_config.rank must be a positive integer and seed an integer")
            model_id = f"{session_id}:train:{model_seq_id}"
            replay = self._replay_or_conflict(model_id, "create_model", None)
            if replay is not None:
                return replay
            request_id = self._futures.new(Result(dump({"model_id": model_id, "type": "create_model"})))
            self._store.add(
                model_id,
                base_model=base_model,
                lora_rank=rank,
                train_mlp=bool(lora.get("train_mlp", True)),
                train_attn=bool(lora.get("train_attn", True)),
                train_unembed=bool(lora.get("train_unembed", True)),
                user_metadata=string_map(body.get("user_metadata"), "user_metadata"),
                origin=self._initial_snapshot(seed or 0),
                creation=("create_model", None, request_id),
            )
            return request_id

    def load_weights(self, body: Mapping[str, Any]) -> str:
        """A session load (creates a model, as in 0.38) or, with ``model_id``, an ordered model op."""
        with self._lock:
            if "session_id" not in body:
                run = self._store.get(field(body, "model_id", str))
                self._store.checkpoint(field(body, "path", str), training_only=True)  # fail fast: 400/404
                return self._submit(run, body.get("seq_id"), "load_weights", body)
            session_id, model_seq_id = self._session_and_seq(body)
            path = field(body, "path", str)
            optimizer = bool(body.get("optimizer", False))
            model_id = f"{session_id}:train:{model_seq_id}"
            replay = self._replay_or_conflict(model_id, "load_weights", path)
            if replay is not None:
                return replay
            checkpoint = self._store.checkpoint(path, training_only=True)
            source = self._store.get(checkpoint.run_id)
            request_id = self._futures.new(
                Result(dump({"path": path, "model_id": model_id, "type": "load_weights"}))
            )
            run = self._store.add(
                model_id,
                base_model=field(body, "base_model", str, required=False) or source.base_model,
                lora_rank=source.lora_rank,
                train_mlp=source.train_mlp,
                train_attn=source.train_attn,
                train_unembed=source.train_unembed,
                user_metadata=string_map(body.get("user_metadata"), "user_metadata"),
                origin=checkpoint.snapshot,
                origin_optimizer=optimizer,
                creation=("load_weights", path, request_id),
            )
            self._store.record_load(checkpoint, run, optimizer)
            return request_id

    # --- ordered model operations ---------------------------------------------------------------

    def forward_backward(self, request: ForwardBackwardRequest) -> str:
        with self._lock:
            return self._submit(
                self._store.get(request.model_id), request.seq_id, "forward_backward", request
            )

    def model_op(self, kind: str, body: Mapping[str, Any]) -> str:
        """``optim_step``, ``save_weights`` or ``save_weights_for_sampler``."""
        with self._lock:
            run = self._store.get(field(body, "model_id", str))
            return self._submit(run, body.get("seq_id"), kind, body)

    # --- sampling -------------------------------------------------------------------------------

    def create_sampling_session(self, body: Mapping[str, Any]) -> str:
        """A sampler over ``model_path``'s weights (training or sampler checkpoint) or, with only
        ``base_model``, over the base model's initial weights. Returns the sampling session id."""
        with self._lock:
            session_id, seq = self._session_and_seq(body, "sampling_session_seq_id")
            model_path = field(body, "model_path", str, required=False)
            base_model = field(body, "base_model", str, required=False)
            if model_path is not None:
                checkpoint = self._store.checkpoint(model_path, training_only=False)
                weights = checkpoint.snapshot.weights
                base_model = base_model or self._store.get(checkpoint.run_id).base_model
            elif base_model is not None:
                weights = self._initial_snapshot(0).weights
            else:
                raise ApiProblem(400, "create_sampling_session needs model_path or base_model")
            return self._sessions.add_sampler(
                session_id, seq, base_model, model_path, weights
            ).sampling_session_id

    def sampler(self, sampling_session_id: str) -> dict[str, Any]:
        with self._lock:
            return self._sessions.sampler(sampling_session_id).to_json()

    def asample(self, body: Mapping[str, Any]) -> tuple[str, list[str]]:
        """Sample now; return the future's request id and one sequence id per sample."""
        with self._lock:
            sampler = self._sessions.sampler(field(body, "sampling_session_id", str))
            seq_id = field(body, "seq_id", int, required=False) or 0
            request = parse_sample_request(body)
            seed = f"{self._seed}:{sampler.sampling_session_id}:{seq_id}"
            request_id = self._futures.new(run_sample(sampler, request, seed))
            sequence_ids = [f"{sampler.sampling_session_id}:{seq_id}:{i}" for i in range(request.num_samples)]
            return request_id, sequence_ids

    # --- futures --------------------------------------------------------------------------------

    def retrieve(self, request_id: Any, hold_s: float) -> Result | None:
        """The future's result; None if it is still queued after holding up to ``hold_s`` (real time)."""
        with self._changed:
            self._futures.result(request_id)  # 404 if unknown
            deadline = time.monotonic() + hold_s
            while self._futures.result(request_id) is None and not self._stopping:
                gap_expiry = self._skip_stale_gaps()
                now = time.monotonic()
                if self._futures.result(request_id) is not None or now >= deadline:
                    break
                wait = deadline - now
                if gap_expiry is not None:
                    wait = min(wait, max(gap_expiry - self._clock.monotonic(), 0.0))
                self._changed.wait(max(wait, 0.001))
            return self._futures.result(request_id)

    def stop(self) -> None:
        """Wake every held ``retrieve`` so that request threads can finish."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def clock_moved(self) -> None:
        """Wake held ``retrieve`` calls so they look at the (advanced) clock again."""
        with self._changed:
            self._changed.notify_all()

    # --- REST views -----------------------------------------------------------------------------

    def get_info(self, model_id: Any) -> dict[str, Any]:
        with self._lock:
            run = self._store.get(model_id)
            return {
                "type": "get_info",
                "model_id": run.run_id,
                "model_data": {
                    "arch": "fake-bigram",
                    "model_name": run.base_model,
                    "tokenizer_id": run.base_model,
                },
                "optimizer_config": {"type": "adamw"},
                "is_lora": True,
                "lora_rank": run.lora_rank,
                "model_name": run.base_model,
            }

    def get_run(self, run_id: Any) -> dict[str, Any]:
        with self._lock:
            return self._store.run_json(self._store.get(run_id))

    def admin_run(self, run_id: Any) -> dict[str, Any]:
        with self._lock:
            return self._store.admin_json(self._store.get(run_id))

    def list_runs(self, limit: int, offset: int) -> dict[str, Any]:
        with self._lock:
            runs = list(self._store)
            return {
                "training_runs": [self._store.run_json(run) for run in runs[offset : offset + limit]],
                "cursor": {"offset": offset, "limit": limit, "total_count": len(runs)},
            }

    def list_checkpoints(self, run_id: Any, limit: int | None, offset: int) -> dict[str, Any]:
        with self._lock:
            live = self._store.live(self._store.get(run_id))
            page = live[offset:] if limit is None else live[offset : offset + limit]
            cursor = {
                "offset": offset,
                "limit": len(live) if limit is None else limit,
                "total_count": len(live),
            }
            return {"checkpoints": [c.to_json() for c in page], "cursor": cursor}

    def list_user_checkpoints(self, limit: int, offset: int) -> dict[str, Any]:
        with self._lock:
            every = self._store.every_checkpoint()
            return {
                "checkpoints": [c.to_json() for c in every[offset : offset + limit]],
                "cursor": {"offset": offset, "limit": limit, "total_count": len(every)},
            }

    def weights_info(self, tinker_path: Any) -> dict[str, Any]:
        with self._lock:
            checkpoint = self._store.checkpoint(tinker_path, training_only=False)
            run = self._store.get(checkpoint.run_id)
            return {
                "base_model": run.base_model,
                "is_lora": True,
                "lora_rank": run.lora_rank,
                "optimizer_config": {"type": "adamw"},
                "train_unembed": run.train_unembed,
                "train_mlp": run.train_mlp,
                "train_attn": run.train_attn,
            }

    def delete_checkpoint(self, run_id: Any, checkpoint_id: str) -> None:
        with self._lock:
            self._store.delete(run_id, checkpoint_id)

    # --- control surface ------------------------------------------------------------------------

    def add_run(
        self,
        *,
        base_model: str,
        checkpoints: int,
        sampler_checkpoints: int,
        corrupted: bool,
        ttl_seconds: float | None,
        user_metadata: Mapping[str, str] | None,
        lora_rank: int,
    ) -> str:
        if not isinstance(base_model, str) or not base_model:
            raise ValueError("base_model must be a non-empty string")
        for name, value in (("checkpoints", checkpoints), ("sampler_checkpoints", sampler_checkpoints)):
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= MAX_SEEDED_CHECKPOINTS
            ):
                raise ValueError(
                    f"{name} must be an integer from 0 to {MAX_SEEDED_CHECKPOINTS}, got {value!r}"
                )
        if (
            not isinstance(lora_rank, int)
            or isinstance(lora_rank, bool)
            or not 1 <= lora_rank <= MAX_LORA_RANK
        ):
            raise ValueError(f"lora_rank must be an integer from 1 to {MAX_LORA_RANK}, got {lora_rank!r}")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool)
            or not isinstance(ttl_seconds, (int, float))
            or not 0 < ttl_seconds <= MAX_TTL_S
        ):
            raise ValueError(
                f"ttl_seconds must be > 0 and at most {MAX_TTL_S:g}, or None, got {ttl_seconds!r}"
            )
        if not isinstance(corrupted, bool):
            raise TypeError(f"corrupted must be a boolean, got {corrupted!r}")
        if user_metadata is not None and not isinstance(user_metadata, Mapping):
            raise TypeError("user_metadata must be a mapping of str to str, or None")
        with self._lock:
            if self._seed_session is None:
                self._seed_session = self._sessions.create()
            origin = self._initial_snapshot(0)
            run = self._store.add(
                f"{self._seed_session}:train:{self._seed_next_seq}",
                base_model=base_model,
                lora_rank=lora_rank,
                user_metadata=None
                if user_metadata is None
                else {str(k): str(v) for k, v in user_metadata.items()},
                origin=origin,
                corrupted=corrupted,
            )
            self._seed_next_seq += 1
            for kind, count in (("training", checkpoints), ("sampler", sampler_checkpoints)):
                state = origin if kind == "training" else Snapshot(weights=origin.weights)
                for i in range(1, count + 1):
                    self._store.save(run, kind, f"step-{10 * i:06d}", state, ttl_seconds, None)
            return run.run_id

    def corrupt(self, run_id: str, corrupted: bool) -> dict[str, Any]:
        with self._lock:
            run = self._store.get(run_id)
            run.corrupted = bool(corrupted)
            return self._store.run_json(run)

    def loads(self, source_run_id: str | None) -> list[Load]:
        with self._lock:
            return self._store.loads(source_run_id)

    def source_checkpoint(self, run_id: str) -> Load | None:
        with self._lock:
            return self._store.get(run_id).source

    def run_ids(self) -> list[str]:
        with self._lock:
            return self._store.ids()
