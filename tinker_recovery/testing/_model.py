"""The tiny, deterministic model behind each fake training run.

A bigram table of logits over hashed token ids (``VOCAB`` buckets): the logits for the token after
``t`` are row ``bucket(t)``. Pure Python (``array('d')``), trained with AdamW. Every operation runs
in a fixed order, so the same inputs always give bit-identical losses.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "VOCAB",
    "AdamParams",
    "BigramModel",
    "Datum",
    "LossError",
    "Sampled",
    "SamplingParams",
    "Snapshot",
    "Tensor",
    "bucket",
    "initial_snapshot",
    "prompt_logprobs",
    "sample",
    "token_of_bucket",
]

VOCAB = 64
_SIZE = VOCAB * VOCAB
_SUPPORTED_LOSSES = ("cross_entropy", "importance_sampling")


class LossError(ValueError):
    """The datums do not fit the loss function (missing or mis-sized inputs, unknown loss)."""


def bucket(token: int) -> int:
    """Map any token id to one of ``VOCAB`` buckets (multiplicative hashing).

    On ``0 .. VOCAB - 1`` it is a permutation (the multiplier is odd), so ``token_of_bucket``
    inverts it there: the sampler emits those token ids.
    """
    return ((int(token) * 2654435761) & 0xFFFFFFFF) % VOCAB


_TOKEN_OF_BUCKET = {bucket(token): token for token in range(VOCAB)}


def token_of_bucket(index: int) -> int:
    """The token id in ``0 .. VOCAB - 1`` whose bucket is ``index`` (0 <= index < VOCAB)."""
    return _TOKEN_OF_BUCKET[index]


@attrs.frozen
class Tensor:
    """A dense tensor: flat ``values`` (floats or ints), ``dtype`` name and ``shape``."""

    values: tuple[float, ...] | tuple[int, ...]
    dtype: str
    shape: tuple[int, ...] = ()


@attrs.frozen
class Datum:
    """One training example: the concatenated text ``tokens`` and the named loss inputs."""

    tokens: tuple[int, ...]
    loss_fn_inputs: Mapping[str, Tensor]


@attrs.frozen(eq=False)
class Snapshot:
    """The whole training state at one moment; never mutated after creation.

    ``exp_avg``/``exp_avg_sq`` are None for a fresh optimizer (all-zero moments).
    """

    weights: array[float]
    exp_avg: array[float] | None = None
    exp_avg_sq: array[float] | None = None
    step: int = 0

    @property
    def size_bytes(self) -> int:
        moments = 0 if self.exp_avg is None else 2 * len(self.exp_avg) * 8
        return len(self.weights) * 8 + moments


@attrs.frozen
class AdamParams:
    """AdamW hyper-parameters, as sent in ``optim_step``; ``grad_clip_norm`` 0 means no clipping."""

    learning_rate: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-12
    weight_decay: float = 0.0
    grad_clip_norm: float = 0.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> AdamParams:
        data = data or {}
        fields = {f.name for f in attrs.fields(cls)}
        return cls(**{k: float(v) for k, v in data.items() if k in fields and v is not None})


def initial_snapshot(seed: int) -> Snapshot:
    """Small uniform weights drawn from ``random.Random(seed)``; fresh optimizer."""
    rng = random.Random(seed)
    return Snapshot(weights=array("d", (rng.uniform(-0.1, 0.1) for _ in range(_SIZE))))


class BigramModel:
    """The mutable state of one run: weights, AdamW moments and step, and pending gradients.

    Not thread-safe: the caller serialises access.
    """

    def __init__(self, snapshot: Snapshot, *, optimizer: bool = True) -> None:
        self._weights = array("d", snapshot.weights)
        self._exp_avg: array[float] | None = None
        self._exp_avg_sq: array[float] | None = None
        if optimizer and snapshot.exp_avg is not None and snapshot.exp_avg_sq is not None:
            self._exp_avg, self._exp_avg_sq = array("d", snapshot.exp_avg), array("d", snapshot.exp_avg_sq)
        self._step = snapshot.step if optimizer else 0
        self._grad: array[float] | None = None

    @property
    def step(self) -> int:
        return self._step

    def snapshot(self) -> Snapshot:
        """Copy the weights and optimizer state (pending gradients are not part of it)."""
        return Snapshot(
            weights=array("d", self._weights),
            exp_avg=None if self._exp_avg is None else array("d", self._exp_avg),
            exp_avg_sq=None if self._exp_avg_sq is None else array("d", self._exp_avg_sq),
            step=self._step,
        )

    def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: str,
        *,
        forward_only: bool = False,
    ) -> tuple[float, list[dict[str, Tensor]]]:
        """Return the summed loss and per-datum ``logprobs``; accumulate gradients unless forward_only.

        ``cross_entropy`` uses ``target_tokens`` and optional ``weights`` (default 1);
        ``importance_sampling`` uses ``target_tokens``, ``logprobs`` (the sampler's) and ``advantages``.
        Raises LossError when an input is missing or has the wrong length.
        """
        if loss_fn not in _SUPPORTED_LOSSES:
            raise LossError(f"loss_fn {loss_fn!r} is not supported by FakeTinker; use {_SUPPORTED_LOSSES}")
        prepared = [_prepare(datum, loss_fn, index) for index, datum in enumerate(data)]
        weights = self._weights
        if not forward_only and self._grad is None:
            self._grad = array("d", bytes(8 * _SIZE))
        grad = None if forward_only else self._grad
        total = 0.0
        outputs = []
        for tokens, targets, coefs, old_logprobs in prepared:
            logprobs = []
            for i, token in enumerate(tokens):
                base = bucket(token) * VOCAB
                row = weights[base : base + VOCAB]
                peak = max(row)
                exps = [math.exp(x - peak) for x in row]
                norm = sum(exps)
                target = bucket(int(targets[i]))
                logprob = row[target] - peak - math.log(norm)
                logprobs.append(logprob)
                if old_logprobs is None:  # cross-entropy: loss = -w * logprob
                    dloss = -coefs[i]
                    total += dloss * logprob
                else:  # importance sampling: loss = -advantage * exp(logprob - old); d/dlogprob = loss
                    dloss = -coefs[i] * math.exp(logprob - old_logprobs[i])
                    total += dloss
                if grad is None or dloss == 0.0:  # grad is None exactly when forward_only
                    continue
                for j in range(VOCAB):  # d logprob / d logit_j = [j == target] - p_j
                    grad[base + j] -= dloss * exps[j] / norm
                grad[base + target] += dloss
            outputs.append(
                {"logprobs": Tensor(values=tuple(logprobs), dtype="float32", shape=(len(logprobs),))}
            )
        return total, outputs

    def optim_step(self, params: AdamParams) -> dict[str, float]:
        """Apply one AdamW step with the pending gradients (zero if none), then clear them."""
        grad = self._grad if self._grad is not None else array("d", bytes(8 * _SIZE))
        self._grad = None
        grad_norm = math.sqrt(math.fsum(g * g for g in grad))
        scale = 1.0
        if params.grad_clip_norm > 0.0 and grad_norm > params.grad_clip_norm:
            scale = params.grad_clip_norm / grad_norm
        if self._exp_avg is None or self._exp_avg_sq is None:
            self._exp_avg = array("d", bytes(8 * _SIZE))
            self._exp_avg_sq = array("d", bytes(8 * _SIZE))
        self._step += 1
        lr, beta1, beta2, eps = params.learning_rate, params.beta1, params.beta2, params.eps
        correction1 = 1.0 - beta1**self._step
        correction2 = 1.0 - beta2**self._step
        decay = 1.0 - lr * params.weight_decay
        weights, exp_avg, exp_avg_sq = self._weights, self._exp_avg, self._exp_avg_sq
        assert exp_avg is not None and exp_avg_sq is not None
        for i in range(_SIZE):
            g = grad[i] * scale
            m = exp_avg[i] = beta1 * exp_avg[i] + (1.0 - beta1) * g
            v = exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g
            weights[i] = weights[i] * decay - lr * (m / correction1) / (math.sqrt(v / correction2) + eps)
        return {"grad_norm:mean": grad_norm, "learning_rate:mean": lr}


def _values(
    datum: Datum, name: str, index: int, length: int, default: float | None = None
) -> tuple[float, ...]:
    tensor = datum.loss_fn_inputs.get(name)
    if tensor is None:
        if default is None:
            raise LossError(f"datum {index}: loss_fn_inputs[{name!r}] is missing")
        return (default,) * length
    if len(tensor.values) != length:
        raise LossError(
            f"datum {index}: loss_fn_inputs[{name!r}] has {len(tensor.values)} values for {length} tokens"
        )
    return tuple(float(v) for v in tensor.values)


def _prepare(
    datum: Datum, loss_fn: str, index: int
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...] | None]:
    length = len(datum.tokens)
    targets = _values(datum, "target_tokens", index, length)
    if loss_fn == "cross_entropy":
        return datum.tokens, targets, _values(datum, "weights", index, length, 1.0), None
    advantages = _values(datum, "advantages", index, length)
    return datum.tokens, targets, advantages, _values(datum, "logprobs", index, length)


# --- sampling -----------------------------------------------------------------------------------

_DEFAULT_MAX_TOKENS = 16


@attrs.frozen
class SamplingParams:
    """What the sampler honours of ``SamplingParams``: ``max_tokens`` (None: 16), ``temperature``
    (0: greedy), ``top_k`` (-1: all), ``top_p`` (1: all) and integer ``stop`` tokens."""

    max_tokens: int = _DEFAULT_MAX_TOKENS
    temperature: float = 1.0
    top_k: int = -1
    top_p: float = 1.0
    stop_tokens: frozenset[int] = frozenset()


@attrs.frozen
class Sampled:
    """One sampled sequence: its tokens, their log-probabilities (temperature 1) and why it ended."""

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]
    stop_reason: str  # "stop" (a stop token was emitted, and is included) or "length"


def _log_softmax(row: Sequence[float]) -> list[float]:
    peak = max(row)
    norm = math.log(math.fsum(math.exp(x - peak) for x in row))
    return [x - peak - norm for x in row]


def _row(weights: Sequence[float], token: int) -> list[float]:
    base = bucket(token) * VOCAB
    return list(weights[base : base + VOCAB])


def _choose(logits: list[float], params: SamplingParams, rng: random.Random) -> int:
    """Index of the next bucket: greedy at temperature 0, else top-k / top-p filtered sampling."""
    if params.temperature <= 0.0:
        return max(range(VOCAB), key=lambda j: (logits[j], -j))
    order = sorted(range(VOCAB), key=lambda j: (-logits[j], j))
    if params.top_k > 0:
        order = order[: params.top_k]
    scaled = [logits[j] / params.temperature for j in order]
    peak = max(scaled)
    weights = [math.exp(x - peak) for x in scaled]
    if params.top_p < 1.0:
        total, kept, running = math.fsum(weights), len(weights), 0.0
        for index, w in enumerate(weights, start=1):
            running += w
            if running >= params.top_p * total:
                kept = index
                break
        order, weights = order[:kept], weights[:kept]
    pick = rng.random() * math.fsum(weights)
    for j, w in zip(order, weights, strict=True):
        pick -= w
        if pick < 0.0:
            return j
    return order[-1]


def sample(
    weights: Sequence[float], prompt: Sequence[int], params: SamplingParams, rng: random.Random
) -> Sampled:
    """Continue ``prompt`` (at least one token) for up to ``params.max_tokens`` tokens.

    Each next token depends only on the previous one; the emitted ids are in ``0 .. VOCAB - 1``.
    ``logprobs`` are the ones the training forward pass gives the same tokens (up to rounding),
    so an importance ratio against unchanged weights is 1. Deterministic given ``rng``'s state.
    """
    if not prompt:
        raise ValueError("the prompt must hold at least one token")
    previous = prompt[-1]
    tokens: list[int] = []
    logprobs: list[float] = []
    for _ in range(params.max_tokens):
        logits = _row(weights, previous)
        index = _choose(logits, params, rng)
        token = token_of_bucket(index)
        tokens.append(token)
        logprobs.append(_log_softmax(logits)[index])
        if token in params.stop_tokens:
            return Sampled(tuple(tokens), tuple(logprobs), "stop")
        previous = token
    return Sampled(tuple(tokens), tuple(logprobs), "length")


def prompt_logprobs(
    weights: Sequence[float], prompt: Sequence[int], last_n: int | None = None
) -> list[float]:
    """Log-probability of each prompt token given the one before; NaN at position 0 and, with
    ``last_n``, at every position before the last ``last_n``."""
    first_scored = 1 if last_n is None else max(1, len(prompt) - last_n)
    out = [math.nan] * len(prompt)
    for i in range(first_scored, len(prompt)):
        out[i] = _log_softmax(_row(weights, prompt[i - 1]))[bucket(prompt[i])]
    return out
