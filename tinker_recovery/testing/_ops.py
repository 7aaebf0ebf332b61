"""What each model operation does to a run once its turn comes, and what sampling answers.

``ModelOps.run`` never raises for a bad request: the operation's future fails instead, with the
``user`` category (or ``server`` for a bug in the fake, which is also logged). Not thread-safe on
its own: ``FakeState`` holds its lock around every call.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping
from typing import Any

from ._common import PROTOBUF, ApiProblem, OpFailed, Result, dump, failure, string_map
from ._model import (
    AdamParams,
    BigramModel,
    LossError,
    Sampled,
    SamplingParams,
    Snapshot,
    prompt_logprobs,
    sample,
)
from ._protobuf import (
    ForwardBackwardRequest,
    ProtoError,
    encode_forward_backward_output,
    encode_sample_response,
)
from ._sessions import SamplingSession, Sessions
from ._store import Run, RunStore

__all__ = ["ModelOps", "SampleRequest", "parse_sample_request", "run_sample"]

logger = logging.getLogger("tinker_recovery.testing.fake_server")

_REFUSED_WHEN_CORRUPTED = frozenset(
    {"forward_backward", "optim_step", "save_weights", "save_weights_for_sampler"}
)
_UNSUPPORTED_SAMPLE_OPTIONS = ("topk_prompt_logprobs", "topk_sample_logprobs", "prompt_alt_tokens_k")
MAX_SAMPLES = 128  # per request; bounds the work one request can ask of the fake
MAX_TOKENS = 4096
MAX_PROMPT_TOKENS = 32_768


class ModelOps:
    """Carries out ``forward_backward``, ``optim_step``, ``save_weights``, ``save_weights_for_sampler``
    and ``load_weights`` on a run's model."""

    def __init__(
        self, store: RunStore, sessions: Sessions, *, corrupt_after_saves: int | None = None
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._corrupt_after_saves = corrupt_after_saves

    def run(self, run: Run, kind: str, payload: Any) -> Result:
        """Carry out one operation; a failure becomes a failed future's body."""
        try:
            if run.corrupted and kind in _REFUSED_WHEN_CORRUPTED:
                raise OpFailed(
                    f"training run {run.run_id} is corrupted and cannot {kind}; "
                    "create a new training client from one of its checkpoints"
                )
            result = self._dispatch(run, kind, payload)
        except OpFailed as exc:
            result = failure(exc.message, exc.category)
        except (LossError, ProtoError, ApiProblem) as exc:
            result = failure(str(exc))
        except Exception:  # a bug in the fake must not hang the client: fail this future
            logger.exception("FakeTinker failed to carry out %s for %s", kind, run.run_id)
            result = failure(f"internal error in FakeTinker while running {kind}", "server")
        self._store.touch(run)
        return result

    def _dispatch(self, run: Run, kind: str, payload: Any) -> Result:
        if kind == "forward_backward":
            return self._forward_backward(run, payload)
        if kind == "optim_step":
            return self._optim_step(run, payload)
        if kind == "save_weights":
            return self._save_weights(run, payload)
        if kind == "save_weights_for_sampler":
            return self._save_weights_for_sampler(run, payload)
        if kind == "load_weights":
            return self._load_weights(run, payload)
        raise OpFailed(f"unknown operation {kind!r}", "server")

    @staticmethod
    def _forward_backward(run: Run, request: ForwardBackwardRequest) -> Result:
        loss, outputs = run.ensure_model().forward_backward(
            request.data, request.loss_fn, forward_only=request.forward_only
        )
        return Result(encode_forward_backward_output(outputs, {"loss:sum": loss}), PROTOBUF)

    @staticmethod
    def _optim_step(run: Run, body: Mapping[str, Any]) -> Result:
        other = body.get("optimizer_params")
        if isinstance(other, Mapping) and other.get("type") not in (None, "adamw", "adam"):
            raise OpFailed(f"optimizer {other.get('type')!r} is not supported by FakeTinker")
        try:
            params = AdamParams.from_json(body.get("adam_params"))
        except (TypeError, ValueError) as exc:
            raise OpFailed(f"invalid adam_params: {exc}") from None
        return Result(dump({"metrics": run.ensure_model().optim_step(params)}))

    @staticmethod
    def _name(body: Mapping[str, Any], default: str) -> str:
        name = body.get("path")
        if name is None:
            return default
        if not isinstance(name, str) or not name or "/" in name:
            raise OpFailed(f"invalid checkpoint name {name!r}: non-empty, without '/'")
        return name

    def _save_weights(self, run: Run, body: Mapping[str, Any]) -> Result:
        name = self._name(body, f"seq-{body.get('seq_id') or 0:06d}")
        if f"weights/{name}" in run.checkpoints and not body.get("overwrite", False):
            raise OpFailed(f"checkpoint weights/{name} already exists; pass overwrite=True to replace it")
        checkpoint = self._store.save(
            run,
            "training",
            name,
            run.ensure_model().snapshot(),
            body.get("ttl_seconds"),
            string_map(body.get("user_metadata"), "user_metadata"),
        )
        run.saves += 1
        if self._corrupts_now(run):
            run.corrupted = True
            logger.info("FakeTinker corrupts %s after its save %d (corrupt_after_saves)", run.run_id,
                        run.saves)
        return Result(dump({"path": checkpoint.tinker_path, "type": "save_weights"}))

    def _corrupts_now(self, run: Run) -> bool:
        """``corrupt_after_saves``: a run a client created fresh (not one restored from a checkpoint,
        nor one seeded by ``add_run``) turns corrupted right after that many saves."""
        return (
            self._corrupt_after_saves is not None
            and run.creation is not None
            and run.creation[0] == "create_model"
            and run.saves == self._corrupt_after_saves
        )

    def _save_weights_for_sampler(self, run: Run, body: Mapping[str, Any]) -> Result:
        """With ``path``: a named sampler checkpoint. Without: an unlisted snapshot behind a new
        sampling session (``sampling_session_seq_id``), as ``save_weights_and_get_sampling_client`` asks."""
        weights = run.ensure_model().snapshot().weights
        sampling_seq = body.get("sampling_session_seq_id")
        if body.get("path") is None and isinstance(sampling_seq, int) and not isinstance(sampling_seq, bool):
            sampler = self._sessions.add_sampler(run.session_id, sampling_seq, run.base_model, None, weights)
            return Result(
                dump({"type": "save_weights_for_sampler", "sampling_session_id": sampler.sampling_session_id})
            )
        name = self._name(body, f"sampler-{body.get('seq_id') or 0:06d}")
        checkpoint = self._store.save(
            run,
            "sampler",
            name,
            Snapshot(weights=weights),
            body.get("ttl_seconds"),
            string_map(body.get("user_metadata"), "user_metadata"),
        )
        return Result(dump({"path": checkpoint.tinker_path, "type": "save_weights_for_sampler"}))

    def _load_weights(self, run: Run, body: Mapping[str, Any]) -> Result:
        checkpoint = self._store.checkpoint(body.get("path"), training_only=True)
        optimizer = bool(body.get("optimizer", False))
        run.model = BigramModel(checkpoint.snapshot, optimizer=optimizer)
        self._store.record_load(checkpoint, run, optimizer)
        return Result(dump({"path": checkpoint.tinker_path, "model_id": run.run_id, "type": "load_weights"}))


# --- sampling -----------------------------------------------------------------------------------


class SampleRequest:
    """A checked ``asample`` body: prompt tokens, sample count, parameters and prompt scoring."""

    def __init__(
        self,
        tokens: tuple[int, ...],
        num_samples: int,
        params: SamplingParams,
        seed: int | None,
        want_prompt_logprobs: bool,
        last_n: int | None,
    ) -> None:
        self.tokens = tokens
        self.num_samples = num_samples
        self.params = params
        self.seed = seed
        self.want_prompt_logprobs = want_prompt_logprobs
        self.last_n = last_n


def _int(
    body: Mapping[str, Any], name: str, default: int | None, minimum: int, maximum: int | None = None
) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ApiProblem(400, f"{name} must be an integer >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ApiProblem(400, f"{name} must be at most {maximum} on FakeTinker, got {value!r}")
    return value


def _number(body: Mapping[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ApiProblem(400, f"sampling_params.{name} must be a finite number, got {value!r}")
    return float(value)


def _prompt_tokens(prompt: Any) -> tuple[int, ...]:
    chunks = prompt.get("chunks") if isinstance(prompt, Mapping) else None
    if not isinstance(chunks, list):
        raise ApiProblem(400, "prompt must be an object with a chunks list")
    tokens: list[int] = []
    for chunk in chunks:
        if not isinstance(chunk, Mapping) or chunk.get("type", "encoded_text") != "encoded_text":
            kind = chunk.get("type") if isinstance(chunk, Mapping) else type(chunk).__name__
            raise ApiProblem(400, f"prompt chunks of type {kind!r} are not supported by FakeTinker")
        values = chunk.get("tokens")
        if not isinstance(values, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in values
        ):
            raise ApiProblem(400, "prompt chunk tokens must be a list of integers")
        tokens.extend(values)
    if not tokens:
        raise ApiProblem(400, "the prompt holds no tokens")
    if len(tokens) > MAX_PROMPT_TOKENS:
        raise ApiProblem(
            400, f"the prompt holds {len(tokens)} tokens; FakeTinker samples from at most {MAX_PROMPT_TOKENS}"
        )
    return tuple(tokens)


def parse_sample_request(body: Mapping[str, Any]) -> SampleRequest:
    """Check an ``asample`` body; ApiProblem(400) naming the field when bad or unsupported.

    Only integer ``stop`` tokens are honoured (FakeTinker has no tokenizer): a string ``stop`` is
    refused. ``num_samples`` is at most MAX_SAMPLES (128) and ``max_tokens`` at most MAX_TOKENS (4096);
    ``max_tokens`` None means 16; a prompt holds at most MAX_PROMPT_TOKENS (32768). ``topk_*``,
    ``prompt_alt_tokens_k`` and ``target_prompt_logprobs`` are refused.
    """
    for name in _UNSUPPORTED_SAMPLE_OPTIONS:
        if body.get(name) not in (None, 0):
            raise ApiProblem(400, f"{name} is not supported by FakeTinker")
    if body.get("target_prompt_logprobs") is not None:
        raise ApiProblem(400, "target_prompt_logprobs is not supported by FakeTinker")
    raw = body.get("sampling_params")
    if not isinstance(raw, Mapping):
        raise ApiProblem(400, "sampling_params must be an object")
    stop = raw.get("stop")
    if isinstance(stop, str) or (isinstance(stop, list) and any(isinstance(s, str) for s in stop)):
        raise ApiProblem(400, "sampling_params.stop: FakeTinker has no tokenizer; give stop token ids")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, int) for s in stop)):
        raise ApiProblem(400, "sampling_params.stop must be a list of token ids")
    params = SamplingParams(
        max_tokens=_int(raw, "max_tokens", 16, 1, MAX_TOKENS) or 16,
        temperature=_number(raw, "temperature", 1.0),
        top_k=_int(raw, "top_k", -1, -1) or -1,
        top_p=_number(raw, "top_p", 1.0),
        stop_tokens=frozenset(stop or ()),
    )
    if params.temperature < 0 or not 0 < params.top_p <= 1:
        raise ApiProblem(400, "sampling_params: temperature must be >= 0 and top_p in (0, 1]")
    tokens = _prompt_tokens(body.get("prompt"))
    last_n = _int(body, "prompt_logprobs_last_n", None, 1)
    if last_n is not None and last_n > len(tokens) - 1:
        raise ApiProblem(400, f"prompt_logprobs_last_n must be at most len(prompt) - 1 = {len(tokens) - 1}")
    return SampleRequest(
        tokens=tokens,
        num_samples=_int(body, "num_samples", 1, 1, MAX_SAMPLES) or 1,
        params=params,
        seed=_int(raw, "seed", None, -(2**63)),
        want_prompt_logprobs=bool(body.get("prompt_logprobs")),
        last_n=last_n,
    )


def run_sample(sampler: SamplingSession, request: SampleRequest, seed: str) -> Result:
    """Sample ``request.num_samples`` sequences; the i-th is drawn from ``Random(f"{seed}:{i}")``,
    ``seed`` being the request's own ``sampling_params.seed`` when given."""
    base = str(request.seed) if request.seed is not None else seed
    sequences: list[Sampled] = [
        sample(sampler.weights, request.tokens, request.params, random.Random(f"{base}:{i}"))
        for i in range(request.num_samples)
    ]
    scored = (
        prompt_logprobs(sampler.weights, request.tokens, request.last_n)
        if request.want_prompt_logprobs
        else None
    )
    return Result(encode_sample_response(sequences, scored), PROTOBUF)
