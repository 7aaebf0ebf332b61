"""The fake service's state: sessions, training runs, checkpoints and futures.

Everything here is protected by one lock; HTTP lives elsewhere (``_api.py``). Operations that the
real service runs asynchronously (create_model, forward_backward, optim_step, the saves and loads)
return a request id at once and are carried out in each model's ``seq_id`` order, as soon as every
lower ``seq_id`` of that model has arrived; ``retrieve`` then hands out the stored result. A client
that gave up on a submission leaves a gap: once a later request has waited ``seq_gap_timeout_s``
for it, the gap is skipped (a late arrival of the missing ``seq_id`` then fails).
"""

from __future__ import annotations

import datetime
import json
import logging
import random
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._model import AdamParams, BigramModel, LossError, Snapshot, initial_snapshot
from ._proto import ForwardBackwardRequest, ProtoError, encode_forward_backward_output

__all__ = ["ApiProblem", "FakeState", "Result", "parse_tinker_path", "JSON", "PROTOBUF"]

logger = logging.getLogger("tinker_recovery.testing.fake_server")

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
_SEGMENTS = {"weights": "training", "sampler_weights": "sampler"}
_REFUSED_WHEN_CORRUPTED = frozenset(
    {"forward_backward", "optim_step", "save_weights", "save_weights_for_sampler"}
)
_SEEN_SEQ_IDS = 256  # per model: remembered seq_ids, so a retried submission gets the same future
_OWNER = "fake-owner"


class ApiProblem(Exception):
    """Answer the request with HTTP ``status`` and a JSON error body carrying ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _OpFailed(Exception):
    """The future resolves to ``{"error": message, "category": category}``."""

    def __init__(self, message: str, category: str = "user") -> None:
        super().__init__(message)
        self.message = message
        self.category = category


@attrs.frozen
class Result:
    """A resolved future: the body to send and its content type."""

    body: bytes
    content_type: str = JSON


def dump(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _iso(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def parse_tinker_path(path: Any) -> tuple[str, str, str]:
    """Split ``tinker://<run_id>/<segment>/<name>``; raises ApiProblem(400) when malformed."""
    if not isinstance(path, str) or not path.startswith("tinker://"):
        raise ApiProblem(400, f"invalid tinker path {path!r}: must start with tinker://")
    parts = path[len("tinker://") :].split("/")
    if len(parts) != 3 or not all(parts) or parts[1] not in _SEGMENTS:
        raise ApiProblem(400, f"invalid tinker path {path!r}: expected tinker://<run_id>/weights/<name>")
    return parts[0], parts[1], parts[2]


def _metadata(value: Any, field: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ApiProblem(400, f"{field} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def _field(body: Mapping, name: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiProblem(400, f"missing field {name!r}")
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ApiProblem(400, f"field {name!r} has the wrong type")
    return value


@attrs.define(eq=False)
class _Checkpoint:
    run_id: str
    kind: str  # "training" | "sampler"
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

    def to_json(self) -> dict:
        return {
            "checkpoint_id": self.checkpoint_id,
            "checkpoint_type": self.kind,
            "time": _iso(self.created_at),
            "tinker_path": self.tinker_path,
            "size_bytes": self.snapshot.size_bytes,
            "public": False,
            "user_metadata": self.user_metadata,
            "expires_at": None if self.expires_at is None else _iso(self.expires_at),
        }


@attrs.define(eq=False)
class _Run:
    run_id: str
    base_model: str
    lora_rank: int
    train_mlp: bool
    train_attn: bool
    train_unembed: bool
    user_metadata: dict[str, str] | None
    last_request_time: float
    origin: Snapshot  # the state the model starts from; instantiated lazily
    origin_optimizer: bool = True
    creation: tuple[str, str | None, str] | None = None  # (kind, loaded path, request_id)
    model: BigramModel | None = None
    corrupted: bool = False
    checkpoints: dict[str, _Checkpoint] = attrs.Factory(dict)  # by checkpoint_id, oldest first
    next_seq: int = 1
    pending: dict[int, tuple[str, str, Any]] = attrs.Factory(dict)  # seq_id -> (kind, request_id, payload)
    seen: OrderedDict[int, tuple[str, str]] = attrs.Factory(OrderedDict)  # seq_id -> (kind, request_id)
    blocked_since: float | None = None  # time.monotonic() when ops started waiting for a missing seq_id

    def ensure_model(self) -> BigramModel:
        if self.model is None:
            self.model = BigramModel(self.origin, optimizer=self.origin_optimizer)
        return self.model


class FakeState:
    """All state of one FakeTinker. Thread-safe; every public method takes the lock.

    ``clock`` returns wall-clock seconds since the epoch (timestamps and checkpoint expiry);
    ``seq_gap_timeout_s`` is how long queued operations wait for a missing ``seq_id``.
    """

    def __init__(
        self,
        *,
        seed: int,
        clock: Callable[[], float],
        seq_gap_timeout_s: float = 2.0,
        max_futures: int = 100_000,
    ) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seed = seed
        self._clock = clock
        self._ids = random.Random(seed)
        self._max_futures = max_futures
        self._gap_timeout_s = seq_gap_timeout_s
        self._blocked: set[_Run] = set()
        self._sessions: set[str] = set()
        self._runs: dict[str, _Run] = {}
        self._futures: OrderedDict[str, Result | None] = OrderedDict()
        self._initial: dict[int, Snapshot] = {}
        self._load_counts: Counter[str] = Counter()
        self._next_request = 1
        self._next_checkpoint = 1
        self._seed_session: str | None = None
        self._seed_next_seq = 0
        self._stopping = False

    # --- helpers (lock held) --------------------------------------------------------------------

    def _new_session(self) -> str:
        session_id = str(uuid.UUID(int=self._ids.getrandbits(128), version=4))
        self._sessions.add(session_id)
        return session_id

    def _initial_snapshot(self, lora_seed: int) -> Snapshot:
        snapshot = self._initial.get(lora_seed)
        if snapshot is None:
            snapshot = self._initial[lora_seed] = initial_snapshot(self._seed * 1_000_003 + lora_seed)
        return snapshot

    def _run(self, run_id: Any) -> _Run:
        run = self._runs.get(run_id) if isinstance(run_id, str) else None
        if run is None:
            raise ApiProblem(404, f"training run {run_id!r} not found")
        return run

    def _live(self, run: _Run) -> list[_Checkpoint]:
        now = self._clock()
        expired = [c for c in run.checkpoints.values() if c.expires_at is not None and c.expires_at <= now]
        for checkpoint in expired:
            del run.checkpoints[checkpoint.checkpoint_id]
        return list(run.checkpoints.values())

    def _checkpoint(self, path: Any, *, training_only: bool) -> _Checkpoint:
        run_id, segment, name = parse_tinker_path(path)
        if training_only and segment != "weights":
            raise ApiProblem(400, f"{path!r} is not a training checkpoint (tinker://<run_id>/weights/<name>)")
        run = self._run(run_id)
        checkpoint = {c.checkpoint_id: c for c in self._live(run)}.get(f"{segment}/{name}")
        if checkpoint is None:
            raise ApiProblem(404, f"checkpoint {path!r} not found")
        return checkpoint

    def _add_checkpoint(
        self, run: _Run, kind: str, name: str, snapshot: Snapshot, ttl_seconds: Any, user_metadata: Any
    ) -> _Checkpoint:
        now = self._clock()
        checkpoint = _Checkpoint(
            run_id=run.run_id,
            kind=kind,
            name=name,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + float(ttl_seconds),
            user_metadata=user_metadata,
            snapshot=snapshot,
            order=self._next_checkpoint,
        )
        self._next_checkpoint += 1
        run.checkpoints.pop(checkpoint.checkpoint_id, None)
        run.checkpoints[checkpoint.checkpoint_id] = checkpoint
        return checkpoint

    def _new_future(self, result: Result | None = None) -> str:
        request_id = f"fake-req-{self._next_request}"
        self._next_request += 1
        self._futures[request_id] = result
        if len(self._futures) > self._max_futures:  # forget the oldest, but never one still queued
            oldest_id, oldest = next(iter(self._futures.items()))
            if oldest is None:
                self._futures.move_to_end(oldest_id)
            else:
                del self._futures[oldest_id]
        return request_id

    def _run_json(self, run: _Run) -> dict:
        live = self._live(run)
        last = next((c for c in reversed(live) if c.kind == "training"), None)
        last_sampler = next((c for c in reversed(live) if c.kind == "sampler"), None)
        return {
            "training_run_id": run.run_id,
            "base_model": run.base_model,
            "model_owner": _OWNER,
            "is_lora": True,
            "corrupted": run.corrupted,
            "lora_rank": run.lora_rank,
            "last_request_time": _iso(run.last_request_time),
            "last_checkpoint": None if last is None else last.to_json(),
            "last_sampler_checkpoint": None if last_sampler is None else last_sampler.to_json(),
            "user_metadata": run.user_metadata,
        }

    def _register_run(self, session_id: str, model_seq_id: int, **fields: Any) -> _Run:
        run_id = f"{session_id}:train:{model_seq_id}"
        run = _Run(run_id=run_id, last_request_time=self._clock(), **fields)
        self._runs[run_id] = run
        return run

    # --- sessions -------------------------------------------------------------------------------

    def create_session(self) -> str:
        with self._lock:
            return self._new_session()

    def has_session(self, session_id: Any) -> bool:
        with self._lock:
            return session_id in self._sessions

    # --- model creation (not ordered by seq_id) -------------------------------------------------

    def _replay_or_conflict(self, model_id: str, kind: str, path: str | None) -> str | None:
        run = self._runs.get(model_id)
        if run is None:
            return None
        if run.creation is not None and run.creation[:2] == (kind, path):
            return run.creation[2]  # a retried submission: same future
        raise ApiProblem(400, f"model {model_id!r} already exists")

    def _session_and_seq(self, body: Mapping) -> tuple[str, int]:
        session_id = _field(body, "session_id", str)
        model_seq_id = _field(body, "model_seq_id", int)
        if session_id not in self._sessions:
            raise ApiProblem(404, f"session {session_id!r} not found")
        if model_seq_id < 0:
            raise ApiProblem(400, "model_seq_id must be >= 0")
        return session_id, model_seq_id

    def create_model(self, body: Mapping) -> str:
        with self._changed:
            session_id, model_seq_id = self._session_and_seq(body)
            base_model = _field(body, "base_model", str)
            lora = _field(body, "lora_config", dict, required=False) or {}
            rank = lora.get("rank", 32)
            seed = lora.get("seed")
            if not isinstance(rank, int) or rank < 1 or (seed is not None and not isinstance(seed, int)):
                raise ApiProblem(400, "lora_config.rank must be a positive integer and seed an integer")
            model_id = f"{session_id}:train:{model_seq_id}"
            replay = self._replay_or_conflict(model_id, "create_model", None)
            if replay is not None:
                return replay
            request_id = self._new_future(Result(dump({"model_id": model_id, "type": "create_model"})))
            self._register_run(
                session_id,
                model_seq_id,
                base_model=base_model,
                lora_rank=rank,
                train_mlp=bool(lora.get("train_mlp", True)),
                train_attn=bool(lora.get("train_attn", True)),
                train_unembed=bool(lora.get("train_unembed", True)),
                user_metadata=_metadata(body.get("user_metadata"), "user_metadata"),
                origin=self._initial_snapshot(seed or 0),
                creation=("create_model", None, request_id),
            )
            return request_id

    def load_weights(self, body: Mapping) -> str:
        """A session load (creates a model, as in 0.38) or, with ``model_id``, an ordered model op."""
        with self._changed:
            if "session_id" not in body:
                run = self._run(_field(body, "model_id", str))
                self._checkpoint(_field(body, "path", str), training_only=True)  # fail fast: 400/404
                return self._submit(run, body.get("seq_id"), "load_weights", body)
            session_id, model_seq_id = self._session_and_seq(body)
            path = _field(body, "path", str)
            optimizer = bool(body.get("optimizer", False))
            model_id = f"{session_id}:train:{model_seq_id}"
            replay = self._replay_or_conflict(model_id, "load_weights", path)
            if replay is not None:
                return replay
            checkpoint = self._checkpoint(path, training_only=True)
            source = self._runs[checkpoint.run_id]
            result = {"path": path, "model_id": model_id, "type": "load_weights"}
            request_id = self._new_future(Result(dump(result)))
            self._register_run(
                session_id,
                model_seq_id,
                base_model=_field(body, "base_model", str, required=False) or source.base_model,
                lora_rank=source.lora_rank,
                train_mlp=source.train_mlp,
                train_attn=source.train_attn,
                train_unembed=source.train_unembed,
                user_metadata=_metadata(body.get("user_metadata"), "user_metadata"),
                origin=checkpoint.snapshot,
                origin_optimizer=optimizer,
                creation=("load_weights", path, request_id),
            )
            self._load_counts[checkpoint.run_id] += 1
            return request_id

    # --- ordered model operations ---------------------------------------------------------------

    def forward_backward(self, request: ForwardBackwardRequest) -> str:
        with self._changed:
            return self._submit(self._run(request.model_id), request.seq_id, "forward_backward", request)

    def model_op(self, kind: str, body: Mapping) -> str:
        """``optim_step``, ``save_weights`` or ``save_weights_for_sampler``."""
        with self._changed:
            run = self._run(_field(body, "model_id", str))
            return self._submit(run, body.get("seq_id"), kind, body)

    def _submit(self, run: _Run, seq_id: Any, kind: str, payload: Any) -> str:
        if seq_id is None:  # unordered: run now
            request_id = self._new_future()
            self._execute(run, kind, request_id, payload)
            return request_id
        if not isinstance(seq_id, int) or isinstance(seq_id, bool):
            raise ApiProblem(400, "seq_id must be an integer")
        seen = run.seen.get(seq_id)
        if seen is not None:
            if seen[0] == kind:
                return seen[1]  # a retried submission: same future
            return self._new_future(_failure(f"seq_id {seq_id} was already used by a {seen[0]} request"))
        if seq_id < run.next_seq:
            return self._new_future(_failure(f"seq_id {seq_id} is below the next expected {run.next_seq}"))
        request_id = self._new_future()
        run.seen[seq_id] = (kind, request_id)
        while len(run.seen) > _SEEN_SEQ_IDS:
            run.seen.popitem(last=False)
        run.pending[seq_id] = (kind, request_id, payload)
        self._drain(run)
        return request_id

    def _drain(self, run: _Run) -> None:
        """Run every queued op whose predecessors are done; track whether the run is blocked."""
        progressed = False
        while run.next_seq in run.pending:
            kind, request_id, payload = run.pending.pop(run.next_seq)
            run.next_seq += 1
            progressed = True
            self._execute(run, kind, request_id, payload)
        if not run.pending:
            run.blocked_since = None
            self._blocked.discard(run)
        elif progressed or run.blocked_since is None:
            run.blocked_since = time.monotonic()
            self._blocked.add(run)

    def _skip_stale_gaps(self) -> float | None:
        """Skip gaps older than the timeout; return the monotonic time the next one expires, if any."""
        now = time.monotonic()
        next_expiry = None
        for run in list(self._blocked):
            assert run.blocked_since is not None
            expiry = run.blocked_since + self._gap_timeout_s
            if expiry <= now:
                logger.debug(
                    "FakeTinker skips seq_id %d..%d of %s", run.next_seq, min(run.pending) - 1, run.run_id
                )
                run.next_seq = min(run.pending)
                self._drain(run)
            elif next_expiry is None or expiry < next_expiry:
                next_expiry = expiry
        return next_expiry

    def _execute(self, run: _Run, kind: str, request_id: str, payload: Any) -> None:
        try:
            if run.corrupted and kind in _REFUSED_WHEN_CORRUPTED:
                raise _OpFailed(
                    f"training run {run.run_id} is corrupted and cannot {kind}; "
                    "create a new training client from one of its checkpoints"
                )
            result = getattr(self, f"_do_{kind}")(run, payload)
        except _OpFailed as exc:
            result = _failure(exc.message, exc.category)
        except (LossError, ProtoError, ApiProblem) as exc:
            result = _failure(str(exc))
        except Exception:  # a bug in the fake must not hang the client: fail this future
            logger.exception("FakeTinker failed to carry out %s for %s", kind, run.run_id)
            result = _failure(f"internal error in FakeTinker while running {kind}", "server")
        run.last_request_time = self._clock()
        if request_id in self._futures:
            self._futures[request_id] = result
        self._changed.notify_all()

    def _do_forward_backward(self, run: _Run, request: ForwardBackwardRequest) -> Result:
        loss, outputs = run.ensure_model().forward_backward(
            request.data, request.loss_fn, forward_only=request.forward_only
        )
        return Result(encode_forward_backward_output(outputs, {"loss:sum": loss}), PROTOBUF)

    def _do_optim_step(self, run: _Run, body: Mapping) -> Result:
        other = body.get("optimizer_params")
        if isinstance(other, Mapping) and other.get("type") not in (None, "adamw", "adam"):
            raise _OpFailed(f"optimizer {other.get('type')!r} is not supported by FakeTinker")
        try:
            params = AdamParams.from_json(body.get("adam_params"))
        except (TypeError, ValueError) as exc:
            raise _OpFailed(f"invalid adam_params: {exc}") from None
        return Result(dump({"metrics": run.ensure_model().optim_step(params)}))

    def _checkpoint_name(self, body: Mapping, default: str) -> str:
        name = body.get("path")
        if name is None:
            return default
        if not isinstance(name, str) or not name or "/" in name:
            raise _OpFailed(f"invalid checkpoint name {name!r}: non-empty, without '/'")
        return name

    def _do_save_weights(self, run: _Run, body: Mapping) -> Result:
        name = self._checkpoint_name(body, f"seq-{body.get('seq_id') or 0:06d}")
        if f"weights/{name}" in run.checkpoints and not body.get("overwrite", False):
            raise _OpFailed(f"checkpoint weights/{name} already exists; pass overwrite=True to replace it")
        ttl = body.get("ttl_seconds")
        checkpoint = self._add_checkpoint(
            run,
            "training",
            name,
            run.ensure_model().snapshot(),
            ttl,
            _metadata(body.get("user_metadata"), "user_metadata"),
        )
        return Result(dump({"path": checkpoint.tinker_path, "type": "save_weights"}))

    def _do_save_weights_for_sampler(self, run: _Run, body: Mapping) -> Result:
        sampling_seq = body.get("sampling_session_seq_id")
        name = self._checkpoint_name(body, f"sampling-{sampling_seq or 0:06d}")
        weights = Snapshot(weights=run.ensure_model().snapshot().weights)
        checkpoint = self._add_checkpoint(
            run,
            "sampler",
            name,
            weights,
            body.get("ttl_seconds"),
            _metadata(body.get("user_metadata"), "user_metadata"),
        )
        result = {"path": checkpoint.tinker_path, "type": "save_weights_for_sampler"}
        if sampling_seq is not None:
            result["sampling_session_id"] = f"{run.run_id}:sample:{sampling_seq}"
        return Result(dump(result))

    def _do_load_weights(self, run: _Run, body: Mapping) -> Result:
        checkpoint = self._checkpoint(body.get("path"), training_only=True)
        run.model = BigramModel(checkpoint.snapshot, optimizer=bool(body.get("optimizer", False)))
        self._load_counts[checkpoint.run_id] += 1
        return Result(dump({"path": checkpoint.tinker_path, "model_id": run.run_id, "type": "load_weights"}))

    # --- futures --------------------------------------------------------------------------------

    def retrieve(self, request_id: Any, hold_s: float) -> Result | None:
        """The future's result; None if it is still queued after holding up to ``hold_s``."""
        with self._changed:
            if request_id not in self._futures:
                raise ApiProblem(404, f"request {request_id!r} not found")
            deadline = time.monotonic() + hold_s
            while self._futures.get(request_id) is None and not self._stopping:
                gap_expiry = self._skip_stale_gaps()
                now = time.monotonic()
                if self._futures.get(request_id) is not None or now >= deadline:
                    break
                wake = deadline if gap_expiry is None else min(deadline, gap_expiry)
                self._changed.wait(max(wake - now, 0.001))
            return self._futures.get(request_id)

    def stop(self) -> None:
        """Wake every held ``retrieve`` so that request threads can finish."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    # --- REST views -----------------------------------------------------------------------------

    def get_info(self, model_id: Any) -> dict:
        with self._lock:
            run = self._run(model_id)
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

    def get_run(self, run_id: Any) -> dict:
        with self._lock:
            return self._run_json(self._run(run_id))

    def list_runs(self, limit: int, offset: int) -> dict:
        with self._lock:
            runs = list(self._runs.values())
            page = [self._run_json(run) for run in runs[offset : offset + limit]]
            return {
                "training_runs": page,
                "cursor": {"offset": offset, "limit": limit, "total_count": len(runs)},
            }

    def list_checkpoints(self, run_id: Any, limit: int | None, offset: int) -> dict:
        with self._lock:
            live = self._live(self._run(run_id))
            page = live[offset:] if limit is None else live[offset : offset + limit]
            cursor = {
                "offset": offset,
                "limit": len(live) if limit is None else limit,
                "total_count": len(live),
            }
            return {"checkpoints": [c.to_json() for c in page], "cursor": cursor}

    def list_user_checkpoints(self, limit: int, offset: int) -> dict:
        with self._lock:
            every = sorted((c for run in self._runs.values() for c in self._live(run)), key=lambda c: c.order)
            page = [c.to_json() for c in every[offset : offset + limit]]
            return {
                "checkpoints": page,
                "cursor": {"offset": offset, "limit": limit, "total_count": len(every)},
            }

    def weights_info(self, tinker_path: Any) -> dict:
        with self._lock:
            checkpoint = self._checkpoint(tinker_path, training_only=False)
            run = self._runs[checkpoint.run_id]
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
            run = self._run(run_id)
            self._live(run)
            if run.checkpoints.pop(checkpoint_id, None) is None:
                raise ApiProblem(404, f"checkpoint {checkpoint_id!r} of run {run_id!r} not found")

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
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(lora_rank, int) or isinstance(lora_rank, bool) or lora_rank < 1:
            raise ValueError(f"lora_rank must be an integer >= 1, got {lora_rank!r}")
        if ttl_seconds is not None and not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be > 0 or None, got {ttl_seconds!r}")
        if user_metadata is not None and not isinstance(user_metadata, Mapping):
            raise TypeError("user_metadata must be a mapping of str to str, or None")
        with self._lock:
            if self._seed_session is None:
                self._seed_session = self._new_session()
            origin = self._initial_snapshot(0)
            run = self._register_run(
                self._seed_session,
                self._seed_next_seq,
                base_model=base_model,
                lora_rank=lora_rank,
                train_mlp=True,
                train_attn=True,
                train_unembed=True,
                user_metadata=None
                if user_metadata is None
                else {str(k): str(v) for k, v in user_metadata.items()},
                origin=origin,
                corrupted=bool(corrupted),
            )
            self._seed_next_seq += 1
            for kind, count in (("training", checkpoints), ("sampler", sampler_checkpoints)):
                state = origin if kind == "training" else Snapshot(weights=origin.weights)
                for i in range(1, count + 1):
                    self._add_checkpoint(run, kind, f"step-{10 * i:06d}", state, ttl_seconds, None)
            return run.run_id

    def corrupt(self, run_id: str, corrupted: bool) -> dict:
        with self._lock:
            run = self._run(run_id)
            run.corrupted = bool(corrupted)
            return self._run_json(run)

    def load_weights_count(self, run_id: str) -> int:
        with self._lock:
            return self._load_counts[run_id]

    def run_ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)


def _failure(message: str, category: str = "user") -> Result:
    return Result(dump({"error": message, "category": category}))
